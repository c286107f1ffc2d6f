"""Stage ``bc_baseline``: behaviour cloning on the teacher's correct trajectories for every training task
(Agent Distillation), from the untrained student. With ``compare.match_compute`` it trains as many SFT steps
as BC init and SCoRe-SFT together. Writes RUN/bc_baseline/teacher_trajectories.jsonl and train/model."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.pipeline.bc_arms import baseline_teacher_trajectories, matched_sft, sft_steps
from score_distill.pipeline.sft import train_sft
from score_distill.stages.bc import rejection_sample, teacher_cost


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    trajs = baseline_teacher_trajectories(ctx)
    sft_cfg, matched = cfg.bc_baseline.sft, None
    if cfg.compare.match_compute:
        sft_cfg, matched = matched_sft(ctx, sft_cfg, sft_steps(ctx, "bc_init") + sft_steps(ctx, "score_sft"))
    info = train_sft(ctx, "bc_baseline", cfg.student.model, rejection_sample(trajs), sft_cfg)
    return {**info, "teacher": teacher_cost(trajs), **({"matched": matched} if matched else {})}
