"""Run every hostile program in tests/adversarial/ and check containment.

Each program's header says what it tries, the expected containment, and the allowed error kinds
(``# outcome: a|b``, ``none`` = no error). Programs print ESCAPED when an attack succeeded.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from score_distill.sandbox import SandboxConfig, SandboxPool
from score_distill.sandbox.uids import pids_of_uid

ADV = Path(__file__).parent / "adversarial"
PROGRAMS = sorted(ADV.glob("*.py"))
ESCAPE_GLOBS = ["/tmp/sdsbx-escape*", "/var/tmp/sdsbx-escape*", "/dev/shm/sdsbx-escape*", "/root/sdsbx-escape*",
                "/sdsbx-escape*"]
pytestmark = pytest.mark.skipif(os.name != "posix" or not os.path.exists("/proc"), reason="Linux sandbox")


def _header(path: Path) -> dict[str, str]:
    head = {}
    for line in path.read_text().splitlines()[:3]:
        key, _, value = line.lstrip("# ").partition(":")
        head[key.strip()] = value.strip()
    return head


@pytest.fixture(scope="module")
def pool():
    os.environ["OPENAI_API_KEY"] = "sk-test-planted"  # a secret the host has and the model must not see
    cfg = SandboxConfig(timeout_s=1.5, allowed_imports=None, memory_mb=512, workdir_mb=64, max_file_mb=16)
    with SandboxPool(cfg, max_workers=2, warm=1) as p:
        yield p
    os.environ.pop("OPENAI_API_KEY", None)


@pytest.fixture(scope="module")
def benign(pool):
    sb = pool.new()
    sb.run("total = 0")
    yield sb
    sb.close()


def test_corpus_is_large_and_documented():
    assert len(PROGRAMS) >= 30
    for p in PROGRAMS:
        h = _header(p)
        assert h.get("tries") and h.get("expect") and h.get("outcome"), f"{p.name}: header incomplete"


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_hostile_program_is_contained(path, pool, benign):
    allowed = {None if o == "none" else o for o in _header(path)["outcome"].split("|")}
    sb = pool.new()
    uid = sb.uid
    try:
        hostile, ok = pool.run_batch([(sb, path.read_text(), None), (benign, "total += 1\nprint(sum(range(1000)))", None)])
        # The other episode is unaffected.
        assert ok.error is None and ok.observation == "499500\n"
        assert hostile.observation.strip(), "observation must never be empty"
        assert "ESCAPED" not in hostile.observation, hostile.observation
        assert "sk-test-planted" not in hostile.observation
        assert hostile.error in allowed, (hostile.error, hostile.observation[-500:])
        # No internals of the sandbox leak into what the model sees.
        assert "isolation.py" not in hostile.observation and "interpreter.py" not in hostile.observation
        # The episode goes on.
        after = sb.run("print(1+1)")
        assert after.error is None and after.observation == "2\n", after
    finally:
        sb.close()
    assert pids_of_uid(uid) == [] if os.geteuid() == 0 else True
    for pattern in ESCAPE_GLOBS:
        assert glob.glob(pattern) == [], pattern
    # The benign episode's state survived all of it.
    assert benign.run("print(total > 0)").observation == "True\n"
