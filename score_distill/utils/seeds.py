"""Seeds derived from names: the same parts give the same seed in any process, any order, any batch."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (e.g. policy, suite, sampling seed, task id), stable across runs and
    Python versions (not ``hash()``, which is salted per process)."""
    key = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1
