"""Supervised fine-tuning as every SFT stage runs it: into ``RUN/<stage>/train`` (resumable), with tracking,
a user's mistake turned into one line naming the field, and the compute recorded."""

from __future__ import annotations

from typing import Any

from score_distill.config import ConfigError
from score_distill.pipeline import compute
from score_distill.trajectory import Trajectory
from score_distill.utils.console import detail

console = detail  # RUN/run.log unless --verbose (utils/console.py)


def train_sft(ctx: Any, stage: str, base_model: str, records: list[Trajectory], sft_cfg: Any, *,
              base_stage: str | None = None, config_key: str | None = None) -> dict[str, Any]:
    """SFT ``base_model`` (the model of ``base_stage``, or the untrained student when None) on ``records``.
    Returns the stage's info: ``model``, ``trained``, ``steps``, ``compute`` (cumulative), ..."""
    from score_distill.training.sft import NothingToTrain, NoTrainedToken
    from score_distill.training.sft import train_sft as run_sft

    before = compute.of_base(ctx.run, base_stage)
    if not records:
        console.print(f"[yellow]{stage}: no training data; the model is unchanged.[/]")
        return {"model": base_model, "trained": False, "n_records": 0, "steps": 0, "compute": before}
    try:
        res = run_sft(ctx.res.resolve_model(base_model), records, ctx.res.with_tracking(sft_cfg),
                      ctx.stage_dir(stage) / "train")
    except NothingToTrain as e:
        console.print(f"[yellow]{stage}: {e}; the model is unchanged.[/]")
        return {"model": base_model, "trained": False, "n_records": len(records), "untrained_only": True,
                "steps": 0, "compute": before}
    except NoTrainedToken:
        key = config_key or f"{stage}.sft"
        raise ConfigError(f"{stage}: all {len(records)} training trajectories are cut before their first "
                          f"assistant turn at {key}.max_length={sft_cfg.max_length}; raise it") from None
    if res.n_untrained_steps:
        console.print(f"{stage}: {res.n_untrained_steps} student steps with format errors kept as context, "
                      "not trained (sft.train_malformed_student_steps)")
    tokens, estimated = compute.sft_tokens(res, sft_cfg)
    after = compute.plus(before, sft_steps=res.steps, sft_tokens=tokens)
    if estimated:
        after["sft_tokens_estimated"] = True
    return {"model": str(res.model_dir), "trained": True, "n_records": len(records), "steps": res.steps,
            "untrained_steps": res.n_untrained_steps, "final_loss": res.losses[-1] if res.losses else None,
            "compute": after}
