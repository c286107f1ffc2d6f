"""Shared-prefix ("cascade") attention for the engine's decode steps.

Every live episode of one task kind starts with the same system prompt, and the G rollouts of one RL item
share their question too. The engine already copies such a prefix's keys/values instead of computing them
again (``RolloutEngine._admit``); this module stops it from *reading* them once per row at every decode step.
Attention is about a third of a decode step of 32 rows here, nearly all of it reading keys/values
(``benchmarks/decode_step.py``), so each row's attention is split in two and merged exactly with the
log-sum-exp of each part:

- the prefix ``[0, P)`` of a family of rows that hold bitwise-identical copies of it: all the family's queries
  attend to one row's copy in one kernel call (read once, not once per row);
- the rest ``[S, kv_len)`` of every row (``S`` the smallest family prefix), masked to ``[P_row, position]``.

Why by hand: transformers' attention functions return no log-sum-exp and treat rows independently; torch's
CPU flash-attention op returns the log-sum-exp, so the two parts merge without approximation (they differ
from one-pass attention only by float summation order).

The engine sets a :class:`CascadePlan` before a decode forward and clears it after; the function registered
here runs the model's own attention whenever no plan is set (prefill, training, other models).

A *mixed* step (:class:`MixedPlan`) decodes one token for every live row and, in the same forward, feeds the
ids just appended to the others (an observation after a turn, a new episode's prompt). Its tokens are packed
into one sequence, so the weights are read once for both instead of once per forward: with this model on this
machine a decode step reads its 0.54 GB of weights in about 90 ms, and a separate forward for each observation
paid that again. The attention is split by hand (no transformers function attends from one packed sequence to
per-row caches): every row's last token attends as in a decode step (cascaded or not), and each fed row's
earlier tokens attend causally to that row's own cache.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

NAME = "score_cascade"
_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_state = threading.local()


@dataclass
class CascadePlan:
    """``families``: (source row, prefix length, member rows) for each group of rows sharing ``[0, P)``
    (a row alone is its own source; none: every row reads its whole cache from ``start`` = 0); ``start``: where
    the per-row part begins (the smallest prefix); ``suffix_mask``: additive mask ``[rows, 1, T, kv_len - start]``
    keeping ``[P_row, position of query t]``."""

    families: list[tuple[int, int, torch.Tensor]]
    start: int
    suffix_mask: torch.Tensor


@dataclass
class MixedPlan:
    """A packed decode-and-feed step. ``last``: the packed index of each row's last token (rows in order);
    ``decode_mask``: the mask of those last tokens, ``[rows, 1, 1, kv_len]`` in the model's own attention's
    form; ``cascade``: the shared-prefix plan for them, or None; ``segments``: (row, start, offset, m) for each
    row fed more than one id, whose first ``m`` ids (packed at ``offset``, at positions ``start``..) attend
    with ``segment_masks``."""

    last: torch.Tensor
    decode_mask: torch.Tensor
    cascade: CascadePlan | None
    segments: list[tuple[int, int, int, int]]
    segment_masks: list[torch.Tensor]


def set_plan(plan: CascadePlan | None) -> None:
    _state.plan = plan


def set_mixed(plan: MixedPlan | None) -> None:
    _state.mixed = plan


def _own_attention(module: Any):
    """The attention the model was loaded with (``_state.fallback``): sdpa, or the model's own eager function."""
    name = getattr(_state, "fallback", "sdpa")
    if name == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[name]


def cascade_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    mixed: MixedPlan | None = getattr(_state, "mixed", None)
    if mixed is not None:
        return _mixed_attention(module, query, key, value, mixed, dropout, scaling, kwargs)
    plan: CascadePlan | None = getattr(_state, "plan", None)
    if plan is None or key.shape[0] != query.shape[0]:
        return _own_attention(module)(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    return _cascaded(query, key, value, plan, scaling), None


def _mixed_attention(module, query, key, value, mixed: MixedPlan, dropout, scaling, kwargs):
    """``query`` [1, heads, T, d] packed; ``key``/``value`` [rows, kv_heads, kv_len, d], the rows' caches with
    this step's keys already written. Returns [1, T, heads, d] as the model's attention functions do."""
    own = _own_attention(module)
    _, heads, t, d = query.shape
    q_last = query[0][:, mixed.last].transpose(0, 1).unsqueeze(2)  # [rows, heads, 1, d]
    if mixed.cascade is not None:
        last = _cascaded(q_last, key, value, mixed.cascade, scaling)
    else:
        last, _ = own(module, q_last, key, value, mixed.decode_mask, dropout=dropout, scaling=scaling, **kwargs)
    out = query.new_empty(1, t, heads, d)
    out[0, mixed.last] = last[:, 0]
    for (row, start, off, m), mask in zip(mixed.segments, mixed.segment_masks):
        o, _ = own(module, query[:, :, off:off + m], key[row:row + 1, :, :start + m],
                   value[row:row + 1, :, :start + m], mask, dropout=dropout, scaling=scaling, **kwargs)
        out[0, off:off + m] = o[0]
    return out, None


def _cascaded(query, key, value, plan: CascadePlan, scaling) -> torch.Tensor:
    """T queries per row ([b, heads, T, d]: one in a decode step, the drafted ids in a verifying step) against the
    plan's split keys; returns [b, T, heads, d]. Without families the whole cache is the per-row part."""
    b, heads, t, d = query.shape
    kv_heads = key.shape[1]
    g = heads // kv_heads
    scale = scaling if scaling is not None else d ** -0.5
    # Grouped-query attention without repeating keys: a kv head's g query heads (times T) are g*T "query
    # positions" (index head * T + t), so the per-query mask repeats over the heads.
    q = query.reshape(b, kv_heads, g * t, d)
    mask = plan.suffix_mask if t == 1 else plan.suffix_mask.repeat(1, 1, g, 1)
    out_s, lse_s = _flash(q, key[:, :, plan.start:], value[:, :, plan.start:], 0.0, False, attn_mask=mask,
                          scale=scale)
    if not plan.families:
        return out_s.reshape(b, heads, t, d).transpose(1, 2).contiguous()
    out_p = torch.empty_like(out_s)
    lse_p = torch.empty_like(lse_s)
    for src, length, members in plan.families:
        n = members.numel()
        qf = q.index_select(0, members).transpose(0, 1).reshape(1, kv_heads, n * g * t, d)
        o, lse = _flash(qf, key[src:src + 1, :, :length], value[src:src + 1, :, :length], 0.0, False, scale=scale)
        out_p.index_copy_(0, members, o.view(kv_heads, n, g * t, d).transpose(0, 1))
        lse_p.index_copy_(0, members, lse.view(kv_heads, n, g * t).transpose(0, 1))
    lse = torch.logaddexp(lse_p, lse_s)
    out = out_p * (lse_p - lse).exp_().unsqueeze(-1) + out_s * (lse_s - lse).exp_().unsqueeze(-1)
    return out.reshape(b, heads, t, d).transpose(1, 2).contiguous()


def _cascade_mask(*args, **kwargs):
    # A forward of this model outside a decode step (none is expected while the engine runs) builds the mask
    # its own attention expects.
    return ALL_MASK_ATTENTION_FUNCTIONS[getattr(_state, "fallback", "sdpa")](*args, **kwargs)


AttentionInterface.register(NAME, cascade_attention)
AttentionMaskInterface.register(NAME, _cascade_mask)


def supported(model: Any) -> bool:
    """The CPU flash-attention op (it returns the log-sum-exp) and an sdpa/eager model."""
    dev = next(model.parameters()).device
    return dev.type == "cpu" and model.config._attn_implementation in ("sdpa", "eager")


@contextmanager
def enabled(model: Any) -> Iterator[None]:
    """The model's attention goes through :func:`cascade_attention` (its own attention unless a plan is set)."""
    cfg = model.config
    own = cfg._attn_implementation
    _state.fallback, _state.plan, _state.mixed = own, None, None
    cfg._attn_implementation = NAME
    try:
        yield
    finally:
        cfg._attn_implementation = own
        _state.plan = _state.mixed = None
