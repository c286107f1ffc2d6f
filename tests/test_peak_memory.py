"""Per-stage peak memory: the peak follows an allocation and starts again after a reset."""

from __future__ import annotations

import pytest

from score_distill.utils.peak_memory import peak_rss_gb, reset_peak


def test_peak_follows_an_allocation_and_resets():
    if not reset_peak() or peak_rss_gb() is None:
        pytest.skip("no /proc/self/clear_refs here")
    before = peak_rss_gb()
    block = bytearray(400 * 2**20)  # zero-filled: every page is touched
    block[::4096] = b"\1" * len(block[::4096])
    during = peak_rss_gb()
    assert during - before >= 0.35
    del block
    assert reset_peak()
    assert peak_rss_gb() < during - 0.3
