"""Stage ``rl_long_horizon`` (``compare.rl_long_horizon``): SCoRe-RL with rollouts from the task, not the
verified prefix."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.pipeline.rl import run_ablation


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    return run_ablation(ctx, cfg, "rl_long_horizon", long_horizon=True)
