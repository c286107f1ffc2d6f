"""Stage ``mps``: Mentored Problem Solving with the BC-init student on the MPS share of training tasks
(:mod:`score_distill.stages.mps`). Writes RUN/mps/trajectories.jsonl (one record per task) and stats.json."""

from __future__ import annotations

import collections
from typing import Any

from score_distill.config import RunConfig
from score_distill.stages.mps import mps_statistics, run_mps, teacher_unreachable
from score_distill.stages.mps_status import Failure
from score_distill.utils.console import detail
from score_distill.utils.jsonl import write_json

console = detail  # RUN/run.log unless --verbose (utils/console.py)


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    student = ctx.res.load_policy(ctx.run.model_of("bc_init") or cfg.student.model, "bc_init")
    out = ctx.stage_dir("mps") / "trajectories.jsonl"
    records = run_mps(student, ctx.res.teacher, ctx.run.tasks("mps"), ctx.res.pool, cfg.agent, cfg.mps, out,
                      seed=cfg.seed, tools_for=ctx.res.tools_for,
                      on_chunk=lambda i, n: console.print(f"MPS chunk {i}/{n} written"))
    del student
    stats = mps_statistics(records)
    write_json(ctx.stage_dir("mps") / "stats.json", stats)
    console.print(f"MPS: {stats['status']}")
    unreachable = [r for r in records if teacher_unreachable(r)]
    if unreachable and cfg.mps.retry_failed:
        from score_distill.models.openai_compat import describe_transient
        from score_distill.user_errors import EndpointError

        causes = collections.Counter(Failure.of(r.meta).cause for r in unreachable)
        raise EndpointError(
            f"MPS: {len(unreachable)} of {len(records)} tasks failed because the teacher "
            f"{describe_transient(causes)} (first: {unreachable[0].meta['failure'][:300]}). "
            f"Every other record is kept in {out}. Fix the endpoint and run the same command again: "
            "only those tasks are redone (or set mps.retry_failed=false to go on without them).")
    return {"stats": stats}
