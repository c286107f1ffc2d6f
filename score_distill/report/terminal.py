"""The results table for the terminal, printed by the CLI at the end of a run."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from score_distill.report.run_files import Summary, ordered_policies, ordered_suites, parse_summary
from score_distill.report.tables import best_per_suite, pct


def render_summary_table(summary: Summary | dict[str, Any], *, width: int = 120, color: bool = False) -> str:
    """Policies x suites, success % mean ± std; the best of each suite is marked ``*`` (and bold in colour).

    ``summary`` is the parsed ``summary.json`` (dict or :class:`Summary`). Returns plain text unless
    ``color`` (ANSI escapes, for a terminal).
    """
    s = summary if isinstance(summary, Summary) else parse_summary(summary)
    suites = ordered_suites(s)
    best = best_per_suite(s)
    title = f"SCoRe results: {s.run.name}" if s.run.name else "SCoRe results"
    # Names go in as Text, never as strings: rich would read "[...]" in a run name as markup.
    graded = any(r.progress is not None for per in s.policies.values() for r in per.values())
    caption = "success % (mean ± std over seeds); * best per suite"
    if graded:
        caption += "; [key steps right before the first error %]"
    table = Table(title=Text(title), caption=Text(caption))
    table.add_column("policy", style="bold")
    for suite in suites:
        table.add_column(Text(suite), justify="right")
    for pol in ordered_policies(set(s.policies)):
        row: list[Text | str] = [Text(pol)]
        for suite in suites:
            r = s.policies[pol].get(suite)
            if r is None:
                row.append("–")
                continue
            is_best = r.success_mean == best[suite]
            cell = f"{pct(r.success_mean)} ± {pct(r.success_std)}" + (" *" if is_best else "  ")
            if graded:
                cell += f" [{pct(r.progress, 0)}]"
            row.append(Text(cell, style="bold green" if is_best else ""))
        table.add_row(*row, style="dim" if pol in ("teacher", "bc_baseline") else None)
    if not s.policies:
        table.add_row("(no evaluation results)")
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system="standard" if color else None, force_terminal=color,
                      highlight=False)
    console.print(table)
    return buf.getvalue()
