"""Training compute of a policy, cumulative from the untrained student.

``{sft_steps, sft_tokens, rl_updates, rl_tokens}``: SFT optimizer steps and the tokens of the sequences they
forwarded (padding excluded), RL optimizer steps (several per rollout batch with mini-batches; none for a
batch without reward spread) and the tokens of the rollout sequences they trained on (each
optimisation pass counted). Each training stage writes its policy's figure into its ``stage.json`` as its
base's figure plus its own, so SCoRe-RL's includes BC init's and SCoRe-SFT's steps.
"""

from __future__ import annotations

from typing import Any

from score_distill.pipeline.run_dir import RunDir

KEYS = ("sft_steps", "sft_tokens", "rl_updates", "rl_tokens")


def zero() -> dict[str, Any]:
    return dict.fromkeys(KEYS, 0)


def of_base(run: RunDir, base_stage: str | None) -> dict[str, Any]:
    """The compute behind a stage's starting model: nothing for the untrained student (``None``); the base
    stage's record otherwise (a record written before compute was kept counts as unknown, not zero)."""
    if base_stage is None:
        return zero()
    st = run.state(base_stage) or {}
    if "compute" in st:
        return dict(st["compute"])
    return {**zero(), "unknown_before": base_stage}


def plus(base: dict[str, Any], **own: int | None) -> dict[str, Any]:
    out = dict(base)
    for k, v in own.items():
        if v is None:
            out[f"{k}_unknown"] = True
        else:
            out[k] = out.get(k, 0) + int(v)
    return out


def sft_tokens(result: Any, sft_cfg: Any) -> tuple[int, bool]:
    """Tokens the SFT run forwarded and whether that is an estimate. The trainer counts them
    (``tokens_seen``); a result written before it did is estimated from its per-epoch token count."""
    seen = getattr(result, "tokens_seen", None)
    if seen:
        return int(seen), False
    rows = max(1, result.n_records - result.n_dropped)
    per_row = result.tokens_per_epoch / rows
    return int(per_row * result.steps * sft_cfg.batch_size * sft_cfg.grad_accum), True
