"""The run report: a self-contained HTML page and the terminal results table.

Imported lazily so ``render_summary_table`` (used by the CLI) does not pull in matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_html", "render_summary_table", "write_report"]


def __getattr__(name: str) -> Any:
    if name in ("build_html", "write_report"):
        from score_distill.report import page

        return getattr(page, name)
    if name == "render_summary_table":
        from score_distill.report.terminal import render_summary_table

        return render_summary_table
    raise AttributeError(f"module 'score_distill.report' has no attribute {name!r}")
