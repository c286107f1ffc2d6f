"""Which items each update uses: a pure function of (number of items, batch size, epochs, seed).

Resuming at update N therefore continues with exactly the items update N would have used, with no
item replayed or skipped, whatever the RNG state of the process.
"""

from __future__ import annotations

import hashlib
import random


def batch_schedule(n_items: int, items_per_update: int, epochs: int, seed: int) -> list[list[int]]:
    """Item indices of every update: each epoch a seeded permutation cut into batches (the last may be smaller)."""
    out: list[list[int]] = []
    for e in range(epochs):
        perm = list(range(n_items))
        random.Random(f"{seed}/epoch{e}").shuffle(perm)
        out.extend(perm[i:i + items_per_update] for i in range(0, n_items, items_per_update))
    return out


def items_fingerprint(item_ids: list[str]) -> str:
    """Identifies the item list, so a resume with different items is refused instead of silently misaligned."""
    return hashlib.sha256("\n".join(item_ids).encode()).hexdigest()[:16]
