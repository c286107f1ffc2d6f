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
