"""The engine's KV cache: one row (slot) per live episode, each row at its own length.

Why not ``DynamicCache``/``StaticCache`` as they are: both write every row of a batch at the same
position (``DynamicLayer`` concatenates a column, ``StaticLayer`` copies at one shared index), so
episodes of different lengths need left padding, and an episode that joins or receives an
observation would force every other row to grow by the same amount (holes that are read at every
later step). Here each layer holds ``[slots, kv_heads, capacity, head_dim]`` and a forward writes
row ``r``'s new keys at that row's own positions; rows are read as views (no copy) up to the longest
row. It is a ``CacheLayerMixin`` inside a ``transformers`` ``Cache``, so the models' attention code
calls it unchanged. transformers' own paged cache (continuous batching) has per-request positions,
but see :mod:`score_distill.engine.engine` for why its manager does not fit.
"""

from __future__ import annotations

import time
import weakref

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

_GROW = 256  # capacity is a multiple of this, and grows by half at least (amortises the copy)


class SlotLayer(CacheLayerMixin):
    is_sliding = False

    def __init__(self, owner: SlotCache):
        super().__init__()
        # A proxy, not a reference: a cycle (cache -> layer -> cache) would keep gigabytes of keys/values alive
        # after the engine drops its cache, until the garbage collector next ran.
        self.owner = weakref.proxy(owner)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        o = self.owner
        shape = (o.slots, key_states.shape[1], o.capacity)
        self.keys = key_states.new_zeros(*shape, key_states.shape[-1])
        self.values = value_states.new_zeros(*shape, value_states.shape[-1])
        self.device = key_states.device
        self.is_initialized = True

    def grow(self, capacity: int) -> None:
        if not self.is_initialized or self.keys.shape[2] >= capacity:
            return
        for name in ("keys", "values"):
            old = getattr(self, name)
            n = old.shape[2]
            # Each page written once (the copy, then zeros past it): a masked slot is still read by the
            # attention kernel, so it must hold a finite value, not whatever the allocator gave.
            new = old.new_empty(old.shape[0], old.shape[1], capacity, old.shape[3])
            new[:, :, :n] = old
            new[:, :, n:].zero_()
            setattr(self, name, new)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        o = self.owner
        rows, start, pos, kv_len = o.rows, o.start, o.positions, o.kv_len
        n = key_states.shape[2]
        if o.packed is not None:  # one packed row of tokens from many rows: each token to its (row, position)
            r, p = o.packed
            self.keys[r, :, p] = key_states[0].transpose(0, 1)
            self.values[r, :, p] = value_states[0].transpose(0, 1)
            return self.keys[rows, :, :kv_len], self.values[rows, :, :kv_len]
        if o.starts is not None:  # several rows, each a block at its own start: written in place, read gathered
            for j, (r, s) in enumerate(zip(rows.tolist(), o.starts)):
                self.keys[r, :, s : s + n] = key_states[j]
                self.values[r, :, s : s + n] = value_states[j]
            return self.keys[rows, :, :kv_len], self.values[rows, :, :kv_len]
        k_rows, v_rows = self.keys[rows], self.values[rows]  # views: rows is a slice
        if start is not None:  # one row (or rows sharing a start): a contiguous block
            k_rows[:, :, start : start + n] = key_states
            v_rows[:, :, start : start + n] = value_states
        else:  # T new tokens per row ([rows] or [rows, T] positions), each row at its own positions
            idx = pos.view(pos.shape[0], 1, -1, 1).expand(-1, key_states.shape[1], -1, key_states.shape[3])
            k_rows.scatter_(2, idx, key_states)
            v_rows.scatter_(2, idx, value_states)
        return k_rows[:, :, :kv_len], v_rows[:, :, :kv_len]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.kv_len, 0

    def get_seq_length(self) -> int:
        return self.owner.kv_len

    def get_max_length(self) -> int:
        return -1

    def copy_row(self, src: int, dst: int, n: int) -> None:
        if self.is_initialized and n > 0:
            self.keys[dst, :, :n] = self.keys[src, :, :n]
            self.values[dst, :, :n] = self.values[src, :, :n]


class SlotCache(Cache):
    """A ``Cache`` of :class:`SlotLayer` s. Before each forward the engine sets which rows run
    (``rows``: a slice, read as a view; or an index tensor, read gathered), where their tokens go
    (``start``: a block of one row; ``starts``: a block per indexed row; ``packed``: the (row, position)
    of each token of one packed sequence; else ``positions``: ``[rows]``, or ``[rows, T]`` for T tokens a
    row) and how many positions the attention reads (``kv_len``)."""

    def __init__(self, num_layers: int, slots: int):
        self.slots = slots
        self.capacity = _GROW
        self.rows: slice | torch.Tensor = slice(0, 0)
        self.start: int | None = None
        self.starts: list[int] | None = None
        self.positions: torch.Tensor | None = None
        self.packed: tuple[torch.Tensor, torch.Tensor] | None = None
        self.kv_len = 0
        self.grow_seconds = 0.0
        super().__init__(layers=[SlotLayer(self) for _ in range(num_layers)])

    def prepare(self, rows: slice | torch.Tensor, kv_len: int, *, start: int | None = None,
                positions: torch.Tensor | None = None, starts: list[int] | None = None,
                packed: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if kv_len > self.capacity:
            t0 = time.perf_counter()
            self.capacity = max(-(-kv_len // _GROW) * _GROW, -(-self.capacity * 3 // 2 // _GROW) * _GROW)
            for layer in self.layers:
                layer.grow(self.capacity)
            self.grow_seconds += time.perf_counter() - t0
        self.rows, self.kv_len, self.start, self.positions, self.starts = rows, kv_len, start, positions, starts
        self.packed = packed

    def copy_row(self, src: int, dst: int, n: int) -> None:
        """Row ``dst`` gets row ``src``'s first ``n`` positions (a fork of a shared prefix, or a move)."""
        if src != dst:
            for layer in self.layers:
                layer.copy_row(src, dst, n)
