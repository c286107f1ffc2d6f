"""Stage ``rl_sparse_reward`` (``compare.rl_sparse_reward``): SCoRe-RL with the outcome reward only."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.pipeline.rl import run_ablation


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    return run_ablation(ctx, cfg, "rl_sparse_reward", sparse_reward=True)
