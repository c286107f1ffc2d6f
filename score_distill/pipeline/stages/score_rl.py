"""Stage ``score_rl``: GRPO from verified prefixes with the key-step reward, on items built from the RL half of
MPS (:mod:`score_distill.stages.rl`). Writes RUN/score_rl/{items.jsonl,log.jsonl,rollouts.jsonl,model/}."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.pipeline.rl import tensorboard_rl, train_rl
from score_distill.rl.items import build_rl_items, save_items
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import read_jsonl


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    rl_half = read_jsonl(ctx.stage_dir("split") / "rl.jsonl", Trajectory)
    mps = read_jsonl(ctx.stage_dir("mps") / "trajectories.jsonl", Trajectory)
    sft_half_ids = {t.task.id for t in mps} - {t.task.id for t in rl_half}
    items = build_rl_items(rl_half, sft_task_ids=sft_half_ids, config=cfg.rl.items)
    save_items(ctx.stage_dir("score_rl") / "items.jsonl", items)
    info = train_rl(ctx, cfg, "score_rl", cfg.rl_config(), items)
    if info["trained"]:
        tensorboard_rl(ctx, cfg, "score_rl")
    return info
