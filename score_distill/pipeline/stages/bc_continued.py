"""Stage ``bc_continued`` (``compare.bc_continued``): BC init's model trained further for as many SFT steps as
SCoRe-SFT took, on the teacher's correct trajectories for every training task, with SCoRe-SFT's settings.
Same start, same steps, same batch as SCoRe-SFT: only the data differs. Writes RUN/bc_continued/train/model."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.pipeline.bc_arms import baseline_teacher_trajectories, matched_sft, sft_steps
from score_distill.pipeline.sft import train_sft
from score_distill.stages.bc import guard_counts, rejection_sample


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    base = ctx.run.model_of("bc_init") or cfg.student.model
    base_stage = "bc_init" if ctx.run.model_of("bc_init") else None
    steps = sft_steps(ctx, "score_sft")
    if steps == 0:  # SCoRe-SFT trained nothing: neither does its control
        from score_distill.pipeline import compute

        return {"model": base, "trained": False, "steps": 0, "compute": compute.of_base(ctx.run, base_stage)}
    sft_cfg, matched = matched_sft(ctx, cfg.score_sft.sft, steps)
    trajs = baseline_teacher_trajectories(ctx)
    kept = rejection_sample(trajs)
    info = train_sft(ctx, "bc_continued", base, kept, sft_cfg, base_stage=base_stage, config_key="score_sft.sft")
    return {**info, "matched": matched, "guard": guard_counts(trajs)}
