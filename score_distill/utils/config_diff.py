"""Which fields of two dumped configurations differ, in words (run manifests, SFT resume checks)."""

from __future__ import annotations

from typing import Any


def config_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted fields where two dumped configs differ, as ``field: old -> new``: a user told only that
    "the config differs" cannot tell an intended override from a typo."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += config_changes(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.') or 'config'}: {old!r} -> {new!r}"]
