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
    (a row alone is its own source); ``start``: where the per-row part begins (the smallest prefix);
    ``suffix_mask``: additive mask ``[rows, 1, 1, kv_len - start]`` keeping ``[P_row, position]``."""

    families: list[tuple[int, int, torch.Tensor]]
    start: int
    suffix_mask: torch.Tensor


def set_plan(plan: CascadePlan | None) -> None:
    _state.plan = plan


def _own_attention(module: Any):
    """The attention the model was loaded with (``_state.fallback``): sdpa, or the model's own eager function."""
    name = getattr(_state, "fallback", "sdpa")
    if name == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[name]


def cascade_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    plan: CascadePlan | None = getattr(_state, "plan", None)
    if plan is None or query.shape[2] != 1 or key.shape[0] != query.shape[0]:
        return _own_attention(module)(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    b, heads, _, d = query.shape
    kv_heads = key.shape[1]
    g = heads // kv_heads
    scale = scaling if scaling is not None else d ** -0.5
    # Grouped-query attention without repeating keys: a kv head's g query heads are g "query positions".
    q = query.reshape(b, kv_heads, g, d)
    out_s, lse_s = _flash(q, key[:, :, plan.start:], value[:, :, plan.start:], 0.0, False,
                          attn_mask=plan.suffix_mask, scale=scale)
    out_p = torch.empty_like(out_s)
    lse_p = torch.empty_like(lse_s)
    for src, length, members in plan.families:
        n = members.numel()
        qf = q.index_select(0, members).transpose(0, 1).reshape(1, kv_heads, n * g, d)
        o, lse = _flash(qf, key[src:src + 1, :, :length], value[src:src + 1, :, :length], 0.0, False, scale=scale)
        out_p.index_copy_(0, members, o.view(kv_heads, n, g, d).transpose(0, 1))
        lse_p.index_copy_(0, members, lse.view(kv_heads, n, g).transpose(0, 1))
    lse = torch.logaddexp(lse_p, lse_s)
    out = out_p * (lse_p - lse).exp_().unsqueeze(-1) + out_s * (lse_s - lse).exp_().unsqueeze(-1)
    return out.reshape(b, heads, 1, d).transpose(1, 2).contiguous(), None


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
    _state.fallback, _state.plan = own, None
    cfg._attn_implementation = NAME
    try:
        yield
    finally:
        cfg._attn_implementation = own
        _state.plan = None
