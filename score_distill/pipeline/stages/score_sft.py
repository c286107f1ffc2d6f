"""Stage ``score_sft``: BC init's model fine-tuned on the SFT half of MPS (corrected and some solved-alone
trajectories). Writes RUN/score_sft/train/model."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.pipeline.sft import train_sft
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import read_jsonl


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    records = read_jsonl(ctx.stage_dir("split") / "sft.jsonl", Trajectory)
    base = ctx.run.model_of("bc_init")
    return train_sft(ctx, "score_sft", base or cfg.student.model, records, cfg.score_sft.sft,
                     base_stage="bc_init" if base else None)
