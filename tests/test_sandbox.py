"""Sandbox behaviour: persistence, answers, limits, isolation, tools, replay, pool."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from score_distill.sandbox import ExecResult, Sandbox, SandboxConfig, SandboxPool, guarantees
from score_distill.sandbox.cli import run_file_cli
from score_distill.sandbox.uids import pids_of_uid
from score_distill.trajectory import Step, ToolCall

ROOT = os.geteuid() == 0
FREE = SandboxConfig(timeout_s=2, allowed_imports=None, memory_mb=512)


@pytest.fixture
def sb():
    with Sandbox(FREE) as s:
        yield s


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_state_persists_and_final_answer(sb):
    assert sb.run("x = 20").observation == "(no output)"
    r = sb.run("x += 1\nprint(x * 2)")
    assert (r.observation, r.error, r.final_answer) == ("42\n", None, None)
    r = sb.run("final_answer_print(x)\nfinal_answer_print('second')\nprint('after')")
    assert r.final_answer == "21"  # the first call wins, the code after it still runs
    assert r.observation == "21\nsecond\nafter\n"
    assert sb.run("print('next')").final_answer is None


def test_exception_observation_has_type_message_and_no_internal_paths(sb):
    r = sb.run("def f(a):\n    return a / 0\nprint('before')\nf(3)")
    assert r.error == "ZeroDivisionError"
    assert r.observation.startswith("before\n")
    assert "ZeroDivisionError: division by zero" in r.observation and "return a / 0" in r.observation
    assert "score_distill" not in r.observation and "/work" not in r.observation and "<string>" not in r.observation
    assert sb.run("print(undefined_name)").error == "NameError"
    assert sb.run("def (").error == "SyntaxError"


def test_timeout_kills_process_group_and_restores_state(sb):
    sb.run("import os, threading, time\nkeep = [1, 2, 3]")
    old_pid = sb.run("print(os.getpid())").observation.strip()
    t0 = time.monotonic()
    r = sb.run("print('partial')\nwhile True:\n    pass")
    assert r.timed_out and r.error == "timeout"
    assert time.monotonic() - t0 < 2 + 3
    assert r.observation.startswith("partial\nTimeout after 2 s")
    assert "restored" in r.observation
    assert _gone(int(old_pid))
    assert sb.run("print(sum(keep))").observation == "6\n"  # replayed silently
    assert sb.run("print(os.getpid())").observation.strip() != old_pid


def test_failed_restore_is_said_in_the_observation(sb):
    pid = sb.run("import os\nprint(os.getpid())").observation.strip()
    sb.run(f"while os.getpid() != {pid}:\n    pass\npid0 = {pid}")  # completes now, loops forever when replayed
    r = sb.run("while True:\n    pass")
    assert r.timed_out and "restoring the earlier state failed at step 2 of 2" in r.observation
    assert sb.run("print('pid0' in globals())").observation == "False\n"  # restarted empty, still usable


def test_memory_bomb_is_a_clear_error(sb):
    sb.run("y = 7")
    r = sb.run("a = 'x' * (4 * 1024**3)")
    assert r.error == "MemoryError" and "MemoryError" in r.observation
    assert sb.run("print(y)").observation == "7\n"


@pytest.mark.skipif(not ROOT, reason="RLIMIT_NPROC and kill-by-uid need a dedicated uid (root)")
def test_fork_bomb_contained_and_children_gone(sb):
    r = sb.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert r.error in ("timeout", "crash")
    assert sb.run("print(1+1)").observation == "2\n"
    # Only the fresh interpreter is left for this uid.
    assert len(pids_of_uid(sb.uid)) == 1


def test_filesystem_writes_outside_workdir_fail(sb):
    for path in ("/tmp/sdsbx-test-x", "/root/sdsbx-test-x", "../sdsbx-test-x", "/dev/shm/sdsbx-test-x"):
        r = sb.run(f"open({path!r}, 'w').write('x')")
        assert r.error in ("OSError", "PermissionError"), (path, r)
        assert not os.path.exists(os.path.join(sb.workdir, path) if path.startswith("..") else path)
    assert sb.run("open('inside.txt', 'w').write('ok')\nprint(open('inside.txt').read())").observation == "ok\n"


@pytest.mark.skipif(not ROOT, reason="as a normal user the host user's own permissions apply")
def test_cannot_read_shadow_or_root(sb):
    assert sb.run("open('/etc/shadow').read()").error == "PermissionError"
    assert sb.run("import os\nos.listdir('/root')").error == "PermissionError"
    assert sb.run("print(os.getuid())").observation.strip() == str(sb.uid) != "0"


@pytest.mark.parametrize("mode", ["namespace", "audit-hook"])
def test_no_network_even_to_a_listening_local_server(mode):
    with Sandbox(FREE.model_copy(update={"network": mode})) as sb:
        _check_no_connect(sb)
        assert sb.isolation["network"] in (("namespace", "audit-hook") if mode == "namespace" else ("audit-hook",))


def _check_no_connect(sb):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(_accept(srv)))
    t.start()
    r = sb.run(f"import socket\ns = socket.socket()\ns.settimeout(1)\n"
               f"s.connect(('127.0.0.1', {port}))\nprint('connected')")
    t.join()
    srv.close()
    assert r.error in ("OSError", "ConnectionRefusedError", "PermissionError", "TimeoutError"), r
    assert "connected" not in r.observation and accepted == [None]


def _accept(srv):
    try:
        return srv.accept()
    except OSError:
        return None


def test_planted_api_key_is_invisible(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-planted")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-planted")
    with Sandbox(FREE) as s:
        r = s.run("import os\nprint(os.environ)\nprint(open('/proc/self/environ').read())\n"
                  "try:\n    print(open(f'/proc/{os.getppid()}/environ').read())\nexcept OSError as e:\n    print(e)")
    assert "sk-test-planted" not in r.observation and "tok-planted" not in r.observation
    assert "HOME" in r.observation


def test_output_truncated_with_marker():
    cfg = FREE.model_copy(update={"max_output_chars": 100})
    with Sandbox(cfg) as s:
        r = s.run("print('a' * 250)")
        assert r.observation.startswith("a" * 100)
        assert r.observation.endswith("... [output truncated: 151 more characters]")
        r = s.run("import os\nos.write(1, b'b' * 5000)\nos.write(2, b'c')")
        assert "[output truncated: 4901 more characters]" in r.observation


def test_stdout_and_stderr_interleave_in_order(sb):
    r = sb.run("import sys\nprint('1')\nprint('2', file=sys.stderr)\nprint('3')")
    assert r.observation == "1\n2\n3\n"


def test_host_tool_via_pipe_and_recorded_calls_not_recalled():
    calls = []

    def web_search(query, k=3):
        calls.append((query, k))
        return f"results for {query} (k={k})"

    with Sandbox(FREE, tools={"web_search": web_search}) as s:
        r = s.run("a = web_search('paris', k=2)\nprint(a)")
        assert r.observation == "results for paris (k=2)\n"
        assert calls == [("paris", 2)]
        assert r.tool_calls == [ToolCall(name="web_search", args=["paris"], kwargs={"k": 2},
                                         result="results for paris (k=2)")]
        rec = [ToolCall(name="web_search", args=["rome"], result="RECORDED")]
        r = s.run("print(web_search('rome'))", recorded=rec)
        assert r.observation == "RECORDED\n" and len(calls) == 1 and r.notes == []
        # More calls than recorded: the extra one goes to the tool and is noted.
        r = s.run("print(web_search('rome'))\nprint(web_search('oslo'))", recorded=rec)
        assert r.observation == "RECORDED\nresults for oslo (k=3)\n" and calls[-1] == ("oslo", 3)
        assert any("no matching recorded result" in n for n in r.notes)
        # A tool failure is the model's observation.
        r = s.run("web_search(object)")
        assert r.error == "TypeError"


def test_replay_restores_variables_without_calling_tools():
    calls = []
    tools = {"web_search": lambda q: calls.append(q) or f"doc about {q}"}
    with Sandbox(FREE, tools=tools) as s:
        steps = [Step(kind="plan", thought="plan")]
        for code in ("import math\nn = 5", "d = web_search('x')\nprint(d)", "n = math.factorial(n)\nprint(n)"):
            r = s.run(code)
            steps.append(Step(code=code, observation=r.observation, tool_calls=r.tool_calls))
        assert len(calls) == 1
        results = s.replay(steps)
        assert [r.observation for r in results] == [st.observation for st in steps[1:]]
        assert len(calls) == 1  # served from the record
        assert s.run("print(n, d)").observation == "120 doc about x\n"


def test_workdir_removed_and_processes_gone_on_close():
    s = Sandbox(FREE)
    s.run("open('f.txt', 'w').write('x')")
    wd, pid = s.workdir, int(s.run("import os\nprint(os.getpid())").observation)
    s.close()
    assert not os.path.exists(wd) and _gone(pid)
    with pytest.raises(RuntimeError):
        s.run("print(1)")


def test_import_allowlist_by_default():
    with Sandbox(SandboxConfig(timeout_s=5)) as s:
        r = s.run("import os")
        assert r.error == "ImportError" and "not allowed" in r.observation
        assert s.run("from subprocess import run").error == "ImportError"
        # Allowed modules import what they need internally.
        r = s.run("import numpy as np, sympy, collections\nprint(int(np.arange(5).sum()), sympy.factorint(12))")
        assert r.observation == "10 {2: 2, 3: 1}\n", r


def test_pool_runs_four_episodes_concurrently():
    with SandboxPool(FREE, max_workers=4, warm=2) as pool:
        sbs = [pool.new() for _ in range(4)]
        for i, s in enumerate(sbs):
            s.run(f"i = {i}")
        t0 = time.monotonic()
        res = pool.run_batch([(s, "import time\ntime.sleep(1)\nprint(i * 10)", None) for s in sbs])
        elapsed = time.monotonic() - t0
        assert [r.observation for r in res] == ["0\n", "10\n", "20\n", "30\n"]
        assert all(isinstance(r, ExecResult) and r.error is None for r in res)
        assert elapsed < 2.5, elapsed  # sequential would take >= 4 s
        wds = [s.workdir for s in sbs]
    assert not any(os.path.exists(w) for w in wds)


def test_guarantees_reports_what_is_in_force():
    g = guarantees(FREE)
    assert g["network_isolation"] in ("namespace", "audit-hook")
    if ROOT:
        assert g["privileges"] == "setuid" and g["probe_uid"] == str(g["uid"]) != "0"
        assert g["limits"]["RLIMIT_NPROC"] == FREE.max_processes
    assert g["limits"]["RLIMIT_AS"] == FREE.memory_mb * 1024 * 1024


def test_cli_runs_a_file(tmp_path, capsys):
    f = tmp_path / "step.py"
    f.write_text("print(6 * 7)\nfinal_answer_print(42)\n")
    assert run_file_cli(str(f)) == 0
    out = capsys.readouterr().out
    assert "Observation: 42\n42" in out and "Final answer: 42" in out
    f.write_text("1/0\n")
    assert run_file_cli(str(f)) == 1
    assert run_file_cli(str(tmp_path / "missing.py")) == 2


def test_config_rejects_unknown_fields():
    with pytest.raises(ValueError):
        SandboxConfig(timeout=3)


def test_a_refused_restart_is_a_clear_error_not_a_closed_descriptor(monkeypatch):
    """An interpreter that stopped, on a host that refuses a new one (no memory, pids or fds left): the step
    gets a crash observation saying why; the sandbox never runs code in the closed child."""
    with Sandbox(SandboxConfig(timeout_s=5)) as box:
        assert box.run("x = 1").error is None
        box._child.kill()

        def refuse():
            raise RuntimeError("the host refused a new interpreter (test)")

        monkeypatch.setattr(box, "_spawn", refuse)
        for _ in range(2):  # and again on the next step: still an observation, not OSError
            res = box.run("print(x)")
            assert res.error == "crash" and "could not run this step" in res.observation
            assert "host refused" in res.observation
