"""What the behaviour-cloning arms share: the teacher's trajectories on every training task, and the number of
SFT steps that matches SCoRe's training compute."""

from __future__ import annotations

import json
from typing import Any

from score_distill.config import ConfigError
from score_distill.stages.bc import solve_resumable
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import append_jsonl, read_jsonl


def baseline_teacher_trajectories(ctx: Any) -> list[Trajectory]:
    """The teacher's trajectories on every training task (resumable), in task order, in RUN/bc_baseline/."""
    path = ctx.stage_dir("bc_baseline") / "teacher_trajectories.jsonl"
    bc_init = ctx.stage_dir("bc_init") / "teacher_trajectories.jsonl"
    if not path.exists() and bc_init.exists():  # reuse the BC-init teacher trajectories: same teacher, same tasks
        append_jsonl(path, read_jsonl(bc_init, Trajectory))
    return solve_resumable(ctx.res.teacher, ctx.run.tasks("train"), path)


def sft_steps(ctx: Any, stage: str) -> int:
    """Optimizer steps the SFT stage ``stage`` took (0 when it had nothing to train)."""
    st = ctx.run.state(stage)
    if st is None:
        raise ConfigError(f"{stage} is not done: the compute-matched arms count its SFT steps")
    if "steps" in st:
        return int(st["steps"])
    result = ctx.stage_dir(stage) / "train" / "train_result.json"  # a record from before steps were kept
    return int(json.loads(result.read_text())["steps"]) if st.get("trained") and result.exists() else 0


def matched_sft(ctx: Any, sft_cfg: Any, steps: int) -> tuple[Any, dict[str, Any]]:
    """``sft_cfg`` set to ``steps`` optimizer steps, and what of SCoRe's SFT it matches: the same batch
    (batch_size x grad_accum) and the same sequence budget (max_length) as SCoRe-SFT, or not."""
    ref = ctx.cfg.score_sft.sft
    matched = {"steps": steps,
               "same_batch": (sft_cfg.batch_size, sft_cfg.grad_accum) == (ref.batch_size, ref.grad_accum),
               "same_max_length": sft_cfg.max_length == ref.max_length}
    return sft_cfg.model_copy(update={"max_steps": max(steps, 1)}), matched
