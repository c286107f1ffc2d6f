"""SCoRe-RL as every RL stage runs it: GRPO from SCoRe-SFT's model on the RL items, with compute recorded."""

from __future__ import annotations

from typing import Any

from score_distill.pipeline import compute
from score_distill.rl.config import RLConfig
from score_distill.utils.console import detail
from score_distill.utils.jsonl import read_jsonl

console = detail  # RUN/run.log unless --verbose (utils/console.py)


def rl_base(ctx: Any, cfg: Any) -> tuple[str, str | None]:
    """(model, its stage): SCoRe-SFT's, else BC init's, else the untrained student."""
    for stage in ("score_sft", "bc_init"):
        if m := ctx.run.model_of(stage):
            return m, stage
    return cfg.student.model, None


def train_rl(ctx: Any, cfg: Any, stage: str, rl_cfg: RLConfig, items: list) -> dict[str, Any]:
    from score_distill.stages.rl import run_rl_stage

    base, base_stage = rl_base(ctx, cfg)
    before = compute.of_base(ctx.run, base_stage)
    # An item whose prefix already uses every allowed step leaves nothing to roll out.
    too_deep = {it.id for it in items if not rl_cfg.long_horizon and len(it.prefix) >= rl_cfg.max_steps}
    items = [it for it in items if it.id not in too_deep]
    if not items:
        console.print(f"[yellow]{stage}: no RL items; the model is unchanged.[/]")
        return {"model": base, "trained": False, "n_items": 0, "compute": before}
    model_dir = run_rl_stage(ctx.res.resolve_model(base), items, rl_cfg, ctx.stage_dir(stage), ctx.res.tools_for,
                             None, pool=ctx.res.pool, progress=f"{stage} RL updates")
    log = read_jsonl(ctx.stage_dir(stage) / "log.jsonl")
    tokens = [row.get("train_tokens") for row in log]
    # Optimizer steps taken, not rollout batches: a batch whose groups all tie takes none (rl/grpo.py).
    steps = sum(int(row.get("optimizer_steps", 1)) for row in log)
    after = compute.plus(before, rl_updates=steps, rl_tokens=None if None in tokens else sum(tokens))
    kinds: dict[str, int] = {}
    for it in items:
        kinds[it.kind] = kinds.get(it.kind, 0) + 1
    return {"model": str(model_dir), "trained": True, "n_items": len(items), "items_by_kind": kinds,
            "dropped_prefix_too_long": len(too_deep), "compute": after}


def tensorboard_rl(ctx: Any, cfg: Any, stage: str) -> None:
    log = ctx.stage_dir(stage) / "log.jsonl"
    if not cfg.tracking.tensorboard or not log.exists():
        return
    from torch.utils.tensorboard import SummaryWriter  # lazy, like run_rl_stage: importing the stages stays torch-free

    w = SummaryWriter(str(ctx.run.path / "tensorboard" / stage))
    for row in read_jsonl(log):
        for key in ("reward_mean", "reward_std", "loss", "kl", "clip_frac", "grad_norm", "groups_with_spread"):
            if isinstance(row.get(key), int | float):
                w.add_scalar(f"rl/{key}", row[key], row["step"])
    w.close()


def run_ablation(ctx: Any, cfg: Any, stage: str, **switch: bool) -> dict[str, Any]:
    """An RL ablation stage: SCoRe-RL's items, base model and settings, with ``switch`` changed."""
    from score_distill.rl.items import load_items

    path = ctx.stage_dir("score_rl") / "items.jsonl"
    items = load_items(path) if path.exists() else []
    return {**train_rl(ctx, cfg, stage, cfg.rl_config().model_copy(update=switch), items), "ablation": switch}
