"""Run every hostile program in tests/adversarial/ and check containment.

Each program's header says what it tries, the expected containment, and the allowed error kinds
(``# outcome: a|b``, ``none`` = no error). Programs print ESCAPED when an attack succeeded.

Every program runs twice: as written, with the import allowlist off, and rewritten so that each of
its imports goes through the allowlist bypass (``random._os`` gives ``os``, and
``os.sys.modules["_frozen_importlib"]`` imports anything) with the allowlist on. The allowlist is
defence in depth only; these runs show the containment does not depend on it. Meanwhile the host
listens on unix sockets (mode 0777) under /run, under the workdirs' parent and in the abstract
namespace; nothing may ever connect to them.
"""

from __future__ import annotations

import ast
import glob
import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from score_distill.sandbox import SandboxConfig, SandboxPool
from score_distill.sandbox.uids import pids_of_uid

ADV = Path(__file__).parent / "adversarial"
PROGRAMS = sorted(ADV.glob("*.py"))
ESCAPE_GLOBS = ["/tmp/sdsbx-escape*", "/var/tmp/sdsbx-escape*", "/dev/shm/sdsbx-escape*", "/root/sdsbx-escape*",
                "/sdsbx-escape*"]
pytestmark = pytest.mark.skipif(os.name != "posix" or not os.path.exists("/proc"), reason="Linux sandbox")

BYPASS_PRELUDE = ("import random as _bypass_random\n"
                  "_bypass = _bypass_random._os.sys.modules['_frozen_importlib']\n"
                  "del _bypass_random\n")


class _ImportsThroughBypass(ast.NodeTransformer):
    """Turn every import statement into a call of _frozen_importlib, which the allowlist never sees."""

    def visit_Import(self, node: ast.Import) -> list[ast.stmt]:
        out = []
        for a in node.names:
            if a.asname:  # import a.b as c -> c is a.b
                out.append(f"{a.asname} = _bypass._gcd_import({a.name!r})")
            else:  # import a.b -> binds a, with a.b loaded
                out.append(f"{a.name.partition('.')[0]} = _bypass.__import__({a.name!r})")
        return [ast.parse(line).body[0] for line in out]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> list[ast.stmt]:
        assert node.level == 0 and node.module, "relative imports cannot occur in a top-level program"
        lines = [f"_m = _bypass._gcd_import({node.module!r})"]
        for a in node.names:
            assert a.name != "*", "star imports are not rewritten"
            lines.append(f"{a.asname or a.name} = _m.{a.name} if hasattr(_m, {a.name!r}) else "
                         f"_bypass._gcd_import({node.module + '.' + a.name!r})")
        return [ast.parse(line).body[0] for line in lines]


def bypass_variant(source: str) -> str:
    tree = _ImportsThroughBypass().visit(ast.parse(source))
    return BYPASS_PRELUDE + ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _header(path: Path) -> dict[str, str]:
    head = {}
    for line in path.read_text().splitlines()[:3]:
        key, _, value = line.lstrip("# ").partition(":")
        head[key.strip()] = value.strip()
    return head


class HostListeners:
    """Unix stream sockets the host listens on; records every connection that gets through."""

    def __init__(self):
        tag = f"sdsbx-host-{os.getpid()}.sock"
        self.paths = [p for p in (f"/run/{tag}", os.path.join(tempfile.gettempdir(), tag))
                      if os.path.isdir(os.path.dirname(p))]
        self.accepted: list[str] = []
        self._socks = []
        for path in self.paths:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            os.chmod(path, 0o777)
            self._socks.append((path, s))
        try:  # the abstract namespace: no file, scoped by network namespace
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(b"\0sdsbx-host")
            self._socks.append(("@sdsbx-host", s))
        except OSError:
            pass  # another test run holds the name: its listener does the same job
        for name, s in self._socks:
            s.listen(16)
            threading.Thread(target=self._accept, args=(name, s), daemon=True).start()

    def _accept(self, name: str, s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            self.accepted.append(name)
            conn.close()

    def close(self) -> None:
        for _, s in self._socks:
            s.close()
        for p in self.paths:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


@pytest.fixture(scope="module")
def listeners():
    h = HostListeners()
    yield h
    h.close()


CFG = SandboxConfig(timeout_s=1.5, allowed_imports=None, memory_mb=512, workdir_mb=64, max_file_mb=16)


@pytest.fixture(scope="module", params=["plain", "bypass"])
def pool(request):
    os.environ["OPENAI_API_KEY"] = "sk-test-planted"  # a secret the host has and the model must not see
    # "bypass": the allowlist is on, and the programs import around it.
    allowlist_on = {"allowed_imports": SandboxConfig().allowed_imports}
    cfg = CFG if request.param == "plain" else CFG.model_copy(update=allowlist_on)
    with SandboxPool(cfg, max_workers=2, warm=1) as p:
        p.variant = request.param
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


def test_bypass_variant_really_gets_around_the_allowlist():
    """Without this, the bypass runs could pass because the imports failed."""
    from score_distill.sandbox import Sandbox

    with Sandbox(SandboxConfig(timeout_s=5)) as sb:
        assert sb.run("import os").error == "ImportError"
        code = bypass_variant("import os\nimport urllib.request\nimport numpy as np\nfrom os import path as p\n"
                              "print(os.getuid() >= 0, urllib.request.__name__, np.__name__, p.__name__)")
        assert "\nimport " not in code.split("\n", 1)[1]  # only the prelude's `import random` is left
        r = sb.run(code)
        assert r.error is None and r.observation == "True urllib.request numpy posixpath\n", r


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_hostile_program_is_contained(path, pool, benign, listeners):
    allowed = {None if o == "none" else o for o in _header(path)["outcome"].split("|")}
    source = path.read_text() if pool.variant == "plain" else bypass_variant(path.read_text())
    sb = pool.new()
    uid = sb.uid
    try:
        hostile, ok = pool.run_batch([(sb, source, None), (benign, "total += 1\nprint(sum(range(1000)))", None)])
        # The other episode is unaffected.
        assert ok.error is None and ok.observation == "499500\n"
        assert hostile.observation.strip(), "observation must never be empty"
        assert "ESCAPED" not in hostile.observation, hostile.observation
        assert "sk-test-planted" not in hostile.observation
        assert "not allowed; allowed modules" not in hostile.observation  # the bypass variant did bypass
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
    assert listeners.accepted == [], f"a host unix socket was reached: {listeners.accepted}"
    # The benign episode's state survived all of it.
    assert benign.run("print(total > 0)").observation == "True\n"
