"""Pronounceable invented names from a seeded syllable generator.

Fictional names guarantee that the search suite's answers cannot be known from pre-training.
Every entity gets a unique *core* word; :func:`twin_of` makes a similar-looking core (one vowel
or consonant changed) so search has to be precise.
"""

from __future__ import annotations

import random

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "pr", "r", "s", "st",
           "t", "tr", "v", "z", "th", "sh", "q"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou"]
_CODAS = ["", "", "", "", "n", "r", "l", "s", "x", "m", "nd", "rk"]


def syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def invent(rng: random.Random) -> str:
    n = 3 if rng.random() < 0.2 else 2
    return "".join(syllable(rng) for _ in range(n)).capitalize()


def twin_of(core: str, rng: random.Random) -> str:
    """A name one letter away from ``core`` (a vowel swapped for another), e.g. Zorvex -> Zorvax."""
    low = core.lower()
    vowel_pos = [i for i, c in enumerate(low) if c in "aeiou"]
    i = rng.choice(vowel_pos) if vowel_pos else len(low) - 1
    new = rng.choice([v for v in "aeiou" if v != low[i]])
    return (low[:i] + new + low[i + 1:]).capitalize()


class NameBank:
    """Hands out unique core words (no core is a substring of another, so names never collide)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def _ok(self, w: str) -> bool:
        lw = w.lower()
        return len(lw) >= 4 and all(lw not in u and u not in lw for u in self.used)

    def take(self, candidate: str | None = None) -> str | None:
        """A new unique core; ``candidate`` if given and free, else None for a candidate."""
        if candidate is not None:
            if not self._ok(candidate):
                return None
            self.used.add(candidate.lower())
            return candidate
        while True:
            w = invent(self.rng)
            if self._ok(w):
                self.used.add(w.lower())
                return w
