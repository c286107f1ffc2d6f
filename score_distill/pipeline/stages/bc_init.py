"""Stage ``bc_init``: the teacher solves the BC share of training tasks; the student is fine-tuned on the correct
ones that passed the teacher guards (cold-start behaviour cloning). Writes RUN/bc_init/teacher_trajectories.jsonl
and RUN/bc_init/train/model."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.pipeline.sft import train_sft
from score_distill.stages.bc import rejection_sample, solve_resumable, teacher_cost
from score_distill.utils.console import detail

console = detail  # RUN/run.log unless --verbose (utils/console.py)


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    out = ctx.stage_dir("bc_init") / "teacher_trajectories.jsonl"
    trajs = solve_resumable(ctx.res.teacher, ctx.run.tasks("bc"), out)
    kept = rejection_sample(trajs)
    cost = teacher_cost(trajs)
    dropped = cost["guard"]["correct_dropped"]
    console.print(f"teacher solved {len(kept)}/{len(trajs)} BC tasks correctly"
                  + (f" ({dropped} more correct solves failed a teacher guard, not trained on)" if dropped else ""))
    info = train_sft(ctx, "bc_init", cfg.student.model, kept, cfg.bc.sft, config_key="bc.sft")
    return {**info, "teacher": cost}
