"""Episodes cannot touch each other: workdirs, /proc/<pid>/root and cwd, signals, ptrace, process budget.

Each live sandbox runs under a uid of its own (root host), so the kernel's ptrace-access and
kill-permission checks separate episodes. The code runs with the import allowlist off.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from score_distill.sandbox import Sandbox, SandboxConfig, SandboxPool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="separate episodes need separate uids (root host); "
                                                           "docs/sandbox.md says what a non-root host lacks")
CFG = SandboxConfig(timeout_s=30, allowed_imports=None, max_processes=16, max_output_chars=200_000)
SECRET = "episode-secret-7f3a"

# Everything one episode may try against another, given [(pid, workdir), ...] of the others.
PROBE = textwrap.dedent('''
    import ctypes, json, os, signal
    libc = ctypes.CDLL(None, use_errno=True)
    def attempt(fn):
        try:
            r = fn()
            return "ESCAPED: " + repr(r)[:200]
        except OSError as e:
            return type(e).__name__
    def sc(*args):  # variadic: ints must go as full longs, or the upper register halves are garbage
        return libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    nr = {"x86_64": {"ptrace": 101, "process_vm_readv": 310},
          "aarch64": {"ptrace": 117, "process_vm_readv": 270}}[os.uname().machine]
    def native(rc):
        if rc < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return rc
    out = {}
    for pid, wd in TARGETS:
        r = {}
        r["read workdir"] = attempt(lambda: open(wd + "/secret.txt").read())
        r["list workdir"] = attempt(lambda: os.listdir(wd))
        r["write workdir"] = attempt(lambda: open(wd + "/planted.txt", "w").write("x"))
        r["proc root"] = attempt(lambda: open(f"/proc/{pid}/root{wd}/secret.txt").read())
        r["proc root list"] = attempt(lambda: os.listdir(f"/proc/{pid}/root/"))
        r["proc cwd"] = attempt(lambda: open(f"/proc/{pid}/cwd/secret.txt").read())
        r["proc cwd link"] = attempt(lambda: os.readlink(f"/proc/{pid}/cwd"))
        r["proc fd"] = attempt(lambda: os.listdir(f"/proc/{pid}/fd"))
        r["proc environ"] = attempt(lambda: open(f"/proc/{pid}/environ").read())
        r["proc mem"] = attempt(lambda: open(f"/proc/{pid}/mem", "rb").read(1))
        r["signal 0"] = attempt(lambda: os.kill(pid, 0))
        r["SIGKILL"] = attempt(lambda: os.kill(pid, signal.SIGKILL))
        r["SIGSTOP group"] = attempt(lambda: os.killpg(pid, signal.SIGSTOP))
        r["ptrace attach"] = attempt(lambda: native(sc(nr["ptrace"], 16, pid, 0, 0)))
        r["ptrace seize"] = attempt(lambda: native(sc(nr["ptrace"], 0x4206, pid, 0, 0)))
        def pidfd_kill():
            fd = native(sc(434, pid, 0))  # pidfd_open works on any pid; sending is checked
            try:
                return native(sc(424, fd, signal.SIGKILL, None, 0))
            finally:
                os.close(fd)
        r["pidfd_send_signal"] = attempt(pidfd_kill)
        buf = ctypes.create_string_buffer(8)
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
        r["process_vm_readv"] = attempt(lambda: native(sc(nr["process_vm_readv"], pid, iov, 1, iov, 1, 0)))
        out[str(pid)] = r
    print(json.dumps(out))
''')


def _setup(sb: Sandbox) -> int:
    r = sb.run(f"import os\nopen('secret.txt', 'w').write({SECRET!r})\nmarker = {SECRET!r}\nprint(os.getpid())")
    assert r.error is None, r.observation
    return int(r.observation)


def _check_probe(attacker: Sandbox, targets: list[tuple[int, str]]) -> None:
    _verify(attacker.run(f"TARGETS = {targets!r}\n" + PROBE), targets)


def _verify(r, targets: list[tuple[int, str]]) -> None:
    assert r.error is None, r.observation
    assert SECRET not in r.observation
    out = json.loads(r.observation)
    assert set(out) == {str(pid) for pid, _ in targets}
    for pid, res in out.items():
        # Refused for lack of permission; a workdir path may simply not exist here (its parent is hidden).
        wrong = {k: v for k, v in res.items()
                 if v != "PermissionError" and not (k.endswith("workdir") and v == "FileNotFoundError")}
        assert not wrong, (pid, wrong)


def _still_intact(sb: Sandbox, pid: int, workdir: str) -> None:
    r = sb.run("import os\nprint(os.getpid(), marker, open('secret.txt').read(), sorted(os.listdir('.')))")
    assert r.observation == f"{pid} {SECRET} {SECRET} ['secret.txt']\n", r.observation


def test_two_episodes_cannot_touch_each_other():
    with Sandbox(CFG) as a, Sandbox(CFG) as b:
        assert a.uid != b.uid
        pa, pb = _setup(a), _setup(b)
        _check_probe(b, [(pa, a.workdir)])
        _check_probe(a, [(pb, b.workdir)])
        _still_intact(a, pa, a.workdir)
        _still_intact(b, pb, b.workdir)


def test_one_episode_cannot_exhaust_the_others_process_budget():
    hog = textwrap.dedent('''
        import os, time
        kids = []
        while True:
            try:
                pid = os.fork()
            except OSError as e:
                print("stopped after", len(kids), "children:", e.strerror)
                break
            if pid == 0:
                time.sleep(600)
                os._exit(0)
            kids.append(pid)
    ''')
    worker = textwrap.dedent('''
        import os
        pids = []
        for _ in range(8):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            pids.append(pid)
        print("forked", len([os.waitpid(p, 0) for p in pids]))
    ''')
    with Sandbox(CFG) as a, Sandbox(CFG) as b:
        r = a.run(hog)
        assert r.observation.startswith(f"stopped after {CFG.max_processes - 1} children"), r.observation
        assert a.run("import os\nos.fork()").error in ("BlockingIOError", "OSError")  # a's budget really is spent
        r = b.run(worker)
        assert r.error is None and r.observation == "forked 8\n", r.observation


def _many(n: int) -> None:
    with SandboxPool(CFG, max_workers=4, warm=0, max_live=n) as pool:
        sbs = [pool.new() for _ in range(n)]
        assert len({s.uid for s in sbs}) == n
        pids = [_setup(s) for s in sbs]
        targets = list(zip(pids, [s.workdir for s in sbs]))
        others = [[t for t in targets if t[0] != pid] for pid in pids]
        # Every episode attacks all the others, all at once.
        results = pool.run_batch([(s, f"TARGETS = {o!r}\n" + PROBE, None) for s, o in zip(sbs, others)])
        for r, o in zip(results, others):
            _verify(r, o)
        for s, pid in zip(sbs, pids):
            _still_intact(s, pid, s.workdir)


def test_32_live_episodes_cannot_touch_each_other():
    _many(32)
