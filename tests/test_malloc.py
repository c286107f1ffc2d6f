"""The allocator setting: taken on glibc, skipped when the user chose their own."""

from __future__ import annotations

import sys

import pytest

from score_distill.utils.malloc import tune_malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tune_malloc_takes_on_glibc_and_steps_aside_for_the_user(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("SCORE_DISTILL_MALLOC", raising=False)
    assert tune_malloc() is True
    monkeypatch.setenv("SCORE_DISTILL_MALLOC", "default")
    assert tune_malloc() is False
    monkeypatch.delenv("SCORE_DISTILL_MALLOC")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert tune_malloc() is False


_HELD_THEN_TRIMMED = """
import json
from score_distill.utils.malloc import release_free_memory, tune_malloc

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

assert tune_malloc()
blocks = [bytearray(4 * 2**20) for _ in range(100)]  # 400 MB in blocks under the mmap threshold: the heap
del blocks
held = rss_mb()
released = release_free_memory()
print(json.dumps({"held": held, "after": rss_mb(), "released": released}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_stays_under_the_tuned_allocator_until_released(monkeypatch):
    # A process of its own: the test process's heap is shared with everything else pytest ran.
    import json
    import subprocess

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("SCORE_DISTILL_MALLOC", raising=False)
    out = subprocess.run([sys.executable, "-c", _HELD_THEN_TRIMMED], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["held"] - r["after"] > 300, r  # the 400 MB stayed resident, and the trim returned them
    assert r["released"] is True
