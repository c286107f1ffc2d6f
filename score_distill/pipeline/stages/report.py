"""Stage ``report``: RUN/summary.json (figures, teacher tokens, training compute per policy) and RUN/report.html."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.utils.jsonl import write_json


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    from score_distill.pipeline.summary import summary
    from score_distill.report import write_report

    write_json(ctx.run.path / "summary.json", summary(ctx))
    return {"report": str(write_report(ctx.run.path))}
