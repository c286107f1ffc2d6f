"""GRPO policy update: group-normalised advantages, clipped ratio, token-mean loss, masked observations.

Why a lean loop on ``accelerate`` rather than TRL's ``GRPOTrainer`` (trl 1.16): the trainer can take a
custom multi-turn rollout (``rollout_func`` returning prompt/completion ids plus an ``env_mask`` for
tool tokens), but that hook is marked experimental ("may change or be removed"), expects generator
log-probs per token and owns the data order, while SCoRe-RL needs (a) rollouts that replay a verified
prefix in *our* sandbox through our agent loop, (b) a reward that reads the item's chosen/rejected
steps and logs a reason per rollout, (c) resume at an exact item cursor. What GRPO itself needs is
~150 lines, below, each tested at token level. ``accelerate`` still gives DDP/DeepSpeed/FSDP and mixed
precision, and TRL's ``VLLMClient`` syncs weights into a vLLM server (see ``stages/rl.py``).

Conventions (as TRL and verl): advantage ``(R - mean_g) / (std_g + eps)`` with the unbiased std of the
group, the same for all tokens of a rollout; loss ``-min(r A, clip(r, 1-eps, 1+eps_high) A)`` summed
over trained tokens and divided by the number of trained tokens in the whole batch ("token-mean",
so gradient accumulation gives exactly the full-batch loss); optional KL to a reference policy with
the k3 estimator ``exp(ref - logp) - (ref - logp) - 1`` on the same tokens only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


def group_advantages(rewards: Sequence[float] | torch.Tensor, groups: Sequence[int], eps: float = 1e-4) -> torch.Tensor:
    """(R - mean) / (std + eps) within each group; 0 for every member of a group whose rewards are all equal."""
    r = torch.as_tensor(rewards, dtype=torch.float64)
    g = torch.as_tensor(list(groups))
    if r.shape != g.shape:
        raise ValueError(f"{r.numel()} rewards for {g.numel()} group ids")
    adv = torch.zeros_like(r)
    for gid in g.unique():
        idx = (g == gid).nonzero(as_tuple=True)[0]
        vals = r[idx]
        if len(vals) < 2 or torch.all(vals == vals[0]):
            continue  # no signal: exactly zero, not 0/eps noise
        adv[idx] = (vals - vals.mean()) / (vals.std(unbiased=True) + eps)
    return adv.float()


@dataclass
class TrainSample:
    input_ids: list[int]
    loss_mask: list[int]  # 1 where the token is trained (predicted from the position before it)
    advantage: float


def pad_batch(samples: Sequence[TrainSample], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), n), pad_id, dtype=torch.long)
    attn = torch.zeros((len(samples), n), dtype=torch.long)
    mask = torch.zeros((len(samples), n), dtype=torch.float32)
    for i, s in enumerate(samples):
        L = len(s.input_ids)
        ids[i, :L] = torch.tensor(s.input_ids)
        attn[i, :L] = 1
        mask[i, :L] = torch.tensor(s.loss_mask, dtype=torch.float32)
    adv = torch.tensor([s.advantage for s in samples], dtype=torch.float32)
    # Targets are ids[:, 1:]; the mask is shifted the same way (token t is predicted at position t-1).
    return {"input_ids": ids, "attention_mask": attn, "target_mask": mask[:, 1:], "advantages": adv}


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log p(input_ids[:, t] | input_ids[:, :t]) for t >= 1, shape [B, T-1], in float32."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1].float()
    return -F.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")


def grpo_token_terms(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float,
    clip_high: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over trained tokens of the clipped-surrogate (+ k3 KL) loss, and per-batch sums for logging."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv
    per_token = -torch.min(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1
        per_token = per_token + kl_coef * kl
    loss_sum = (per_token * mask).sum()
    with torch.no_grad():
        is_clipped = ((ratio < 1 - clip_low) & (adv < 0)) | ((ratio > 1 + clip_high) & (adv > 0))
        stats = {"kl_sum": (kl * mask).sum(), "clipped": (is_clipped.float() * mask).sum(),
                 "ratio_sum": (ratio * mask).sum()}
    return loss_sum, stats


class GRPOUpdater:
    """One GRPO update per call on a batch of rollouts (``ppo_epochs`` optimiser steps over it)."""

    def __init__(self, model: Any, optimizer: Any, accelerator: Any, *, clip_eps: float = 0.2,
                 clip_eps_high: float | None = None, kl_coef: float = 0.0, ppo_epochs: int = 1,
                 micro_batch_size: int = 4, max_grad_norm: float | None = 1.0, pad_id: int = 0,
                 ref_model: Any | None = None):
        self.model, self.optimizer, self.acc = model, optimizer, accelerator
        self.clip_low, self.clip_high = clip_eps, clip_eps if clip_eps_high is None else clip_eps_high
        self.kl_coef, self.ppo_epochs, self.mb = kl_coef, ppo_epochs, micro_batch_size
        self.max_grad_norm, self.pad_id, self.ref_model = max_grad_norm, pad_id, ref_model

    def _micro(self, samples: list[TrainSample]) -> list[dict[str, torch.Tensor]]:
        # Similar lengths together: less padding per micro-batch (order does not change the loss).
        order = sorted(range(len(samples)), key=lambda i: len(samples[i].input_ids))
        chunks = [[samples[i] for i in order[k:k + self.mb]] for k in range(0, len(order), self.mb)]
        dev = self.acc.device
        return [{k: v.to(dev) for k, v in pad_batch(c, self.pad_id).items()} for c in chunks]

    @torch.no_grad()
    def _ref_logps(self, b: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if self.kl_coef == 0:
            return None
        if self.ref_model is not None:
            return token_logprobs(self.ref_model, b["input_ids"], b["attention_mask"])
        unwrapped = self.acc.unwrap_model(self.model)
        if hasattr(unwrapped, "disable_adapter"):  # LoRA: the base model is the reference, no copy needed
            with unwrapped.disable_adapter():
                return token_logprobs(self.model, b["input_ids"], b["attention_mask"])
        raise ValueError("kl_coef > 0 needs a reference model (or a LoRA adapter whose base is the reference)")

    def update(self, samples: list[TrainSample]) -> dict[str, float]:
        samples = [s for s in samples if any(s.loss_mask[1:])]
        if not samples:
            return {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "tokens": 0, "grad_norm": 0.0, "sequences": 0}
        micro = self._micro(samples)
        tokens = sum(float(b["target_mask"].sum()) for b in micro)
        # Token-mean over the global batch: every process divides by the same total, and DDP's gradient
        # averaging over processes is undone by the factor num_processes.
        total = torch.tensor(tokens, device=self.acc.device)
        if self.acc.num_processes > 1:
            total = self.acc.reduce(total, reduction="sum")
        denom = float(total) / self.acc.num_processes
        self.model.eval()  # old/ref log-probs without dropout
        with torch.no_grad():
            olds = [token_logprobs(self.model, b["input_ids"], b["attention_mask"]) if self.ppo_epochs > 1 else None
                    for b in micro]
            refs = [self._ref_logps(b) for b in micro]
        self.model.train()
        loss_total = kl_total = clip_total = ratio_total = 0.0
        grad_norm = 0.0
        for _ in range(self.ppo_epochs):
            for k, b in enumerate(micro):
                last = k == len(micro) - 1
                ctx = self.acc.no_sync(self.model) if not last else contextlib.nullcontext()
                with ctx:
                    logp = token_logprobs(self.model, b["input_ids"], b["attention_mask"])
                    # With one pass the sampling policy is the current one: ratio = 1, gradient = PG.
                    old = olds[k] if olds[k] is not None else logp.detach()
                    loss_sum, st = grpo_token_terms(logp, old, b["advantages"], b["target_mask"],
                                                    clip_low=self.clip_low, clip_high=self.clip_high,
                                                    ref_logp=refs[k], kl_coef=self.kl_coef)
                    self.acc.backward(loss_sum / denom)
                loss_total += float(loss_sum.detach()) / denom
                kl_total += float(st["kl_sum"])
                clip_total += float(st["clipped"])
                ratio_total += float(st["ratio_sum"])
            if self.max_grad_norm is not None:
                gn = self.acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
                grad_norm = float(gn) if gn is not None else 0.0
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        n = tokens * self.ppo_epochs
        return {"loss": loss_total / self.ppo_epochs, "kl": kl_total / n, "clip_frac": clip_total / n,
                "ratio_mean": ratio_total / n, "tokens": int(tokens), "grad_norm": grad_norm if math.isfinite(grad_norm) else -1.0,
                "sequences": len(samples)}

