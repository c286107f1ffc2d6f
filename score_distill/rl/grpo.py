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
over trained tokens and divided by the number of trained tokens of the optimizer step's mini-batch
("token-mean", so gradient accumulation gives exactly the mini-batch loss); optional KL to a reference
policy with the k3 estimator ``exp(ref - logp) - (ref - logp) - 1`` on the same tokens only. As verl's
actor: mini-batches of whole prompts in batch order, old log-probs recomputed by the trained model once
before the first step. Log-probs are computed at trained (completion) positions only, from one
padding-free row per micro-batch: no padding, no LM head on prompt or observation tokens.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from score_distill.training.trained_logprobs import install as install_trained_logprobs
from score_distill.training.trained_logprobs import pack


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
    group: int = 0  # index of the item (prompt) in the rollout batch; a mini-batch holds whole groups


def _trained_count(s: TrainSample) -> int:
    return sum(1 for m in s.loss_mask[1:] if m)


def trained_logprobs(model: Any, samples: Sequence[TrainSample], device: Any) -> torch.Tensor:
    """log p of every trained token of ``samples``, flat (sample order, then position), float32.

    One padding-free row; the LM head runs on the trained positions only (see
    :mod:`score_distill.training.trained_logprobs`, which ``GRPOUpdater`` installs on the model).
    """
    row = pack([s.input_ids for s in samples], [s.loss_mask for s in samples], device)
    return model(**row, trained_logprobs=True).log_probs.float()


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
    adv = advantages if advantages.shape == logp.shape else advantages[:, None]  # per token, or per sequence
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
    """The GRPO update on one batch of rollouts, as the reference runs it.

    The batch's items are cut, in order, into mini-batches of ``mini_batch_size`` items (each with all of
    its rollouts); each mini-batch is one optimizer step, and ``ppo_epochs`` passes repeat that. The old
    log-probs are taken once, before the first step, so from the second step on the ratio differs from 1
    and the clip acts. ``mini_batch_size=None``: the whole batch is one step (ratio 1: plain policy gradient).
    Inside a step, ``micro_batch_size`` sequences go through one padding-free forward/backward (gradient
    accumulation; the loss is the token mean over the step's trained tokens either way).
    """

    def __init__(self, model: Any, optimizer: Any, accelerator: Any, *, clip_eps: float = 0.2,
                 clip_eps_high: float | None = None, kl_coef: float = 0.0, ppo_epochs: int = 1,
                 micro_batch_size: int = 4, max_grad_norm: float | None = 1.0, pad_id: int = 0,
                 ref_model: Any | None = None, mini_batch_size: int | None = None):
        self.model, self.optimizer, self.acc = model, optimizer, accelerator
        self.clip_low, self.clip_high = clip_eps, clip_eps if clip_eps_high is None else clip_eps_high
        self.kl_coef, self.ppo_epochs, self.mb = kl_coef, ppo_epochs, micro_batch_size
        self.mini = mini_batch_size
        self.max_grad_norm, self.pad_id, self.ref_model = max_grad_norm, pad_id, ref_model
        install_trained_logprobs(accelerator.unwrap_model(model))
        if ref_model is not None:
            install_trained_logprobs(ref_model)

    def _micro(self, samples: list[TrainSample]) -> list[list[TrainSample]]:
        return [samples[k:k + self.mb] for k in range(0, len(samples), self.mb)]

    def _mini_batches(self, samples: list[TrainSample], n_items: int | None) -> list[list[TrainSample]]:
        n_groups = n_items if n_items is not None else max((s.group for s in samples), default=-1) + 1
        n_steps = 1 if self.mini is None else max(1, math.ceil(n_groups / self.mini))
        if self.acc.num_processes > 1:  # every process must take the same number of steps (DDP all-reduce)
            t = torch.tensor(n_steps, device=self.acc.device)
            n_steps = int(self.acc.reduce(t, reduction="max"))
        minis: list[list[TrainSample]] = [[] for _ in range(n_steps)]
        for s in sorted(samples, key=lambda s: s.group):  # stable: rollouts keep their order within a group
            minis[0 if self.mini is None else min(s.group // self.mini, n_steps - 1)].append(s)
        return minis

    def _logps(self, model: Any, samples: list[TrainSample]) -> torch.Tensor:
        with self.acc.autocast():
            return trained_logprobs(model, samples, self.acc.device)

    @torch.no_grad()
    def _ref_logps(self, samples: list[TrainSample]) -> torch.Tensor | None:
        if self.kl_coef == 0:
            return None
        if self.ref_model is not None:
            return self._logps(self.ref_model, samples)
        unwrapped = self.acc.unwrap_model(self.model)
        if hasattr(unwrapped, "disable_adapter"):  # LoRA: the base model is the reference, no copy needed
            with unwrapped.disable_adapter():
                return self._logps(self.model, samples)
        raise ValueError("kl_coef > 0 needs a reference model (or a LoRA adapter whose base is the reference)")

    def _global_tokens(self, n: int) -> float:
        total = torch.tensor(float(n), device=self.acc.device)
        if self.acc.num_processes > 1:
            total = self.acc.reduce(total, reduction="sum")
        return float(total)

    def update(self, samples: list[TrainSample], n_items: int | None = None) -> dict[str, Any]:
        """``n_items``: items in this process's rollout batch (default: the largest group id + 1); it fixes the
        number of mini-batches even when groups without reward spread were dropped."""
        samples = [s for s in samples if any(s.loss_mask[1:])]
        empty = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "ratio_mean": 1.0, "tokens": 0, "grad_norm": 0.0,
                 "sequences": 0, "optimizer_steps": 0, "mini_batches": 0, "clip_frac_steps": [], "kl_steps": []}
        if not samples and self.acc.num_processes == 1:
            return empty
        minis = self._mini_batches(samples, n_items)
        micros = [self._micro(m) for m in minis]
        # Old (sampling-policy) log-probs, once, before any step. The first step of the first pass starts from
        # exactly these weights, so its own detached log-probs are the old ones (no extra forward).
        self.model.eval()  # old/ref log-probs without dropout
        with torch.no_grad():
            olds = [[None if (k == 0 and self.ppo_epochs == 1) else self._logps(self.model, mb) for mb in mm]
                    for k, mm in enumerate(micros)]
            refs = [[self._ref_logps(mb) for mb in mm] for mm in micros]
        self.model.train()
        steps: list[dict[str, float]] = []
        for epoch in range(self.ppo_epochs):
            for k, mm in enumerate(micros):
                tokens = sum(_trained_count(s) for s in minis[k])
                total = self._global_tokens(tokens)
                if total == 0:
                    continue  # every item of this mini-batch lacked reward spread, on every process: no step
                # Token mean over the step's global tokens: DDP's averaging over processes is undone.
                denom = total / self.acc.num_processes
                acc_stats = {"loss": 0.0, "kl": 0.0, "clipped": 0.0, "ratio": 0.0}
                for j, mb in enumerate(mm):
                    last = j == len(mm) - 1
                    ctx = self.acc.no_sync(self.model) if not last else contextlib.nullcontext()
                    with ctx:
                        logp = self._logps(self.model, mb)
                        old = olds[k][j] if olds[k][j] is not None and epoch + k > 0 else logp.detach()
                        adv = torch.cat([torch.full((_trained_count(s),), float(s.advantage)) for s in mb])
                        adv = adv.to(logp.device)
                        loss_sum, st = grpo_token_terms(logp, old, adv, torch.ones_like(logp),
                                                        clip_low=self.clip_low, clip_high=self.clip_high,
                                                        ref_logp=refs[k][j], kl_coef=self.kl_coef)
                        self.acc.backward(loss_sum / denom)
                    acc_stats["loss"] += float(loss_sum.detach()) / denom
                    acc_stats["kl"] += float(st["kl_sum"])
                    acc_stats["clipped"] += float(st["clipped"])
                    acc_stats["ratio"] += float(st["ratio_sum"])
                if not mm:  # this process has nothing in a step the others take: join the all-reduce with zeros
                    self.acc.backward(sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0)
                gn = 0.0
                if self.max_grad_norm is not None:
                    g = self.acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
                    gn = float(g) if g is not None else 0.0
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                steps.append({"tokens": tokens, "grad_norm": gn if math.isfinite(gn) else -1.0, **acc_stats})
        if not steps:
            return empty
        n = sum(s["tokens"] for s in steps) or 1
        return {
            "loss": sum(s["loss"] for s in steps) / len(steps),
            "kl": sum(s["kl"] for s in steps) / n,
            "clip_frac": sum(s["clipped"] for s in steps) / n,
            "ratio_mean": sum(s["ratio"] for s in steps) / n,
            "tokens": int(sum(_trained_count(s) for s in samples)),
            "grad_norm": sum(s["grad_norm"] for s in steps) / len(steps),
            "sequences": len(samples),
            "optimizer_steps": len(steps),
            "mini_batches": len(minis),
            # Per optimizer step, in order: the first step of a batch has ratio 1 (clip 0) by construction.
            "clip_frac_steps": [round(s["clipped"] / max(1, s["tokens"]), 6) for s in steps],
            "kl_steps": [round(s["kl"] / max(1, s["tokens"]), 8) for s in steps],
        }
