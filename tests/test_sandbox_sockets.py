"""No socket reaches anything outside the sandbox: the kernel refuses socket(2), ctypes or not.

The model code here imports through the allowlist bypass (``random._os``, ``_frozen_importlib``)
with the allowlist on: the containment must not depend on the allowlist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from score_distill.sandbox import Sandbox, SandboxConfig, guarantees

sys.path.insert(0, str(Path(__file__).parent))
from test_sandbox_adversarial import HostListeners, bypass_variant  # noqa: E402

pytestmark = pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="seccomp filter arches")
ROOT = os.geteuid() == 0
HOMES_ONLY = ["/root", "/home"]  # hides the Python install's home but leaves /run and /tmp visible


@pytest.fixture(scope="module")
def listeners():
    h = HostListeners()
    yield h
    h.close()


def _host_socket_paths(extra: list[str]) -> list[str]:
    """Every path-named unix socket bound on the host (its /proc/net/unix), plus the harness's own."""
    paths = set(extra)
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7].startswith("/"):
                paths.add(parts[7])
    return sorted(paths)


PROBE = '''
import ctypes, json, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for path in PATHS:
    r = {"visible": os.path.lexists(path)}
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect(path)
        r["connected"] = "socket module"
    except OSError as e:
        r["socket_module"] = e.strerror
    fd = libc.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
    if fd >= 0:
        addr = struct.pack("H", socket.AF_UNIX) + path.encode() + b"\\0"
        if libc.connect(fd, addr, len(addr)) == 0:
            r["connected"] = "libc"
        os.close(fd)
    else:
        r["libc"] = os.strerror(ctypes.get_errno())
    out[path] = r
print(json.dumps(out))
'''


def _probe(sb: Sandbox, paths: list[str]) -> dict:
    r = sb.run(bypass_variant(f"PATHS = {paths!r}\n" + PROBE))
    assert r.error is None, r.observation
    return json.loads(r.observation)


@pytest.mark.parametrize("hide", ["default", "homes-only"])
def test_no_host_socket_file_is_reachable(listeners, hide):
    cfg = SandboxConfig(timeout_s=20) if hide == "default" else SandboxConfig(timeout_s=20, hide_paths=HOMES_ONLY)
    paths = _host_socket_paths(listeners.paths)
    with Sandbox(cfg) as sb:
        assert sb.isolation["sockets"] == "seccomp"
        assert sb.run("import os").error == "ImportError"  # the allowlist is on; the probe goes around it
        seen = _probe(sb, paths)
    assert not [p for p, r in seen.items() if "connected" in r], seen
    assert listeners.accepted == []
    for p in listeners.paths:
        if hide == "default":  # /run and the workdirs' parent are hidden
            assert not seen[p]["visible"], p
        else:  # the file is right there, and the kernel still refuses the socket
            assert seen[p]["visible"] and seen[p]["socket_module"] == os.strerror(1) == seen[p]["libc"], seen[p]


@pytest.mark.skipif(not ROOT, reason="reading the host's /run as the host user needs no sandbox to show")
def test_the_probe_detects_an_escape_when_sockets_are_allowed(listeners):
    """Control: network='allow' has no socket filter, and the same probe connects (the issue's finding)."""
    before = len(listeners.accepted)
    with Sandbox(SandboxConfig(timeout_s=20, hide_paths=HOMES_ONLY, network="allow")) as sb:
        assert sb.isolation["sockets"] == "allowed"
        seen = _probe(sb, listeners.paths)
    assert all(r.get("connected") for r in seen.values()), seen
    assert len(listeners.accepted) > before


def test_every_socket_family_io_uring_and_fd_theft_refused_in_native_code():
    code = bypass_variant(textwrap.dedent('''
        import ctypes, json, os, socket
        libc = ctypes.CDLL(None, use_errno=True)
        def call(*args):
            rc = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
            return "ok" if rc >= 0 else os.strerror(ctypes.get_errno())
        fams = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_VSOCK": 40,
                "AF_ALG": 38, "AF_BLUETOOTH": 31, "AF_XDP": 44}
        nr_socket, nr_pair = {"x86_64": (41, 53), "aarch64": (198, 199)}[os.uname().machine]
        out = {name: call(nr_socket, fam, 1, 0) for name, fam in fams.items()}
        out["raw AF_INET"] = call(nr_socket, 2, 3, 1)
        pair = (ctypes.c_int * 2)()
        out["socketpair AF_UNIX"] = call(nr_pair, 1, 1, 0, pair)
        out["socketpair AF_INET"] = call(nr_pair, 2, 1, 0, pair)
        params = (ctypes.c_char * 120)()
        out["io_uring_setup"] = call(425, 8, params)
        if os.uname().machine == "x86_64":
            out["x32 socket"] = call(41 | 0x40000000, 1, 1, 0)
        # Taking a socket from another process, or driving one: refused even on oneself.
        pidfd = libc.syscall(ctypes.c_long(434), ctypes.c_long(os.getpid()), ctypes.c_long(0))
        out["pidfd_getfd"] = call(438, pidfd, 1, 0)
        nr_ptrace, nr_vm = {"x86_64": (101, 310), "aarch64": (117, 270)}[os.uname().machine]
        out["ptrace TRACEME"] = call(nr_ptrace, 0, 0, 0, 0)
        buf = ctypes.create_string_buffer(8)
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
        out["process_vm_readv self"] = call(nr_vm, os.getpid(), iov, 1, iov, 1, 0)
        a, b = socket.socketpair()  # asyncio's self-pipe works
        a.send(b"x")
        out["pair works"] = b.recv(1) == b"x"
        print(json.dumps(out))
    '''))
    with Sandbox(SandboxConfig(timeout_s=20)) as sb:
        r = sb.run(code)
    assert r.error is None, r.observation
    out = json.loads(r.observation)
    eperm = os.strerror(1)
    assert out.pop("socketpair AF_UNIX") == "ok" and out.pop("pair works") is True
    assert out == {k: eperm for k in out}, out


_NO_SECCOMP_HOST = textwrap.dedent('''
    # A host process whose kernel "lacks" seccomp filters: it refuses prctl(PR_SET_SECCOMP) and
    # seccomp(2) with EINVAL, as a kernel without CONFIG_SECCOMP_FILTER does. Its children inherit that.
    import ctypes, json, sys
    from score_distill.sandbox import Sandbox, SandboxConfig
    from score_distill.sandbox.isolation import _libc, _SockFilter, _SockFprog
    LD, JEQ, RET = 0x20, 0x15, 0x06
    ALLOW, EINVAL = 0x7FFF0000, 0x00050000 | 22
    prog = [(LD, 0, 0, 4), (JEQ, 1, 0, 0xC000003E), (RET, 0, 0, ALLOW), (LD, 0, 0, 0),
            (JEQ, 4, 0, 317), (JEQ, 0, 2, 157), (LD, 0, 0, 16), (JEQ, 1, 0, 22), (RET, 0, 0, ALLOW),
            (RET, 0, 0, EINVAL)]
    arr = (_SockFilter * len(prog))(*[_SockFilter(*i) for i in prog])
    assert _libc.prctl(38, 1, 0, 0, 0) == 0
    assert _libc.prctl(22, 2, ctypes.byref(_SockFprog(len(prog), arr)), 0, 0) == 0
    out = {}
    try:
        Sandbox(SandboxConfig()).close()
        out["required"] = "started"
    except RuntimeError as e:
        out["required"] = str(e)
    with Sandbox(SandboxConfig(socket_filter="if-available", allowed_imports=None)) as sb:
        out["if-available"] = sb.isolation["sockets"]
        out["errors"] = sb.isolation["errors"]
        out["run"] = sb.run("import socket\\nsocket.socket(socket.AF_UNIX)\\nprint('made')").observation
    from score_distill.doctor import doctor
    out["doctor"] = doctor()  # says why, on stdout, and fails
    print(json.dumps(out))
''')


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the refusing filter is written for x86_64")
def test_fails_closed_where_the_kernel_refuses_the_filter():
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]), COLUMNS="400")  # no wrapped table cells
    p = subprocess.run([sys.executable, "-c", _NO_SECCOMP_HOST], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert "cannot refuse sockets in the kernel" in out["required"] and "if-available" in out["required"]
    assert out["if-available"] == "allowed" and "made" in out["run"]
    assert any("seccomp socket filter" in e for e in out["errors"])
    assert out["doctor"] == 1 and "cannot refuse sockets" in p.stdout


def test_guarantees_report_the_socket_filter():
    g = guarantees(SandboxConfig(timeout_s=20))
    assert g["sockets"] == "seccomp" and "every family" in g["sockets_meaning"]
    assert g["network_isolation"] in ("namespace", "audit-hook")
