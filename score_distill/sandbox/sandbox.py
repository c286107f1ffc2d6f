"""Sandbox: one episode's persistent, isolated Python interpreter that runs model-written code.

State survives between run() calls. A timeout or crash kills the interpreter (its whole process
group and every process of its uid), starts a new one and silently replays the cells that had
completed, serving their recorded host-tool results, so the episode's state survives.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from score_distill.sandbox import uids
from score_distill.sandbox.config import SandboxConfig
from score_distill.sandbox.process import ChannelError, ChildProcess
from score_distill.trajectory import Step, ToolCall

ToolFn = Callable[..., Any]
_LIVE: weakref.WeakSet = weakref.WeakSet()  # closed at exit by score_distill.sandbox.pool's atexit hook


@dataclass
class ExecResult:
    observation: str
    final_answer: str | None = None
    error: str | None = None  # None | "timeout" | "crash" | "SystemExit" | an exception class name
    seconds: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)  # e.g. recorded tool results that did not match


class _Cell:
    """Bookkeeping of one run(): which recorded tool results are left to serve."""

    def __init__(self, recorded: Sequence[ToolCall] | None, live_fallback: bool):
        self.recorded = list(recorded or [])
        self.live_fallback = live_fallback
        self.calls: list[ToolCall] = []
        self.notes: list[str] = []
        self.tool_seconds = 0.0


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None, tools: dict[str, ToolFn] | None = None, *,
                 _child: ChildProcess | None = None, _lease: uids.UidLease | None = None,
                 _on_close: Callable[[], None] | None = None):
        self.config = config or SandboxConfig()
        self.tools = dict(tools or {})
        self._lock = threading.Lock()
        self._lease = _lease
        self._on_close = _on_close  # the pool's: a slot for a live interpreter is free again
        self._child: ChildProcess | None = _child
        self._history: list[tuple[str, list[ToolCall]]] = []  # completed cells, for restore-by-replay
        self.closed = False
        if self._lease is None and os.geteuid() == 0 and self.config.uid is None:
            self._lease = uids.acquire(self.config.uid_range)
        try:
            if self._child is None:
                self._child = self._spawn()
            self._send_tools()
        except BaseException:
            if self._child is not None:
                self._child.close()
            if self._lease is not None:
                self._lease.release()
            raise
        _LIVE.add(self)

    # -- public API ------------------------------------------------------------------------------
    @property
    def uid(self) -> int:
        return self._child.uid

    @property
    def pid(self) -> int:
        """The interpreter's process id (it changes when a timeout or crash restarts it)."""
        return self._child.proc.pid

    @property
    def workdir(self) -> str:
        return self._child.workdir

    @property
    def isolation(self) -> dict:
        """What the interpreter reported it has in force (network, filesystem, limits, uid)."""
        return dict(self._child.report)

    def run(self, code: str, recorded: Sequence[ToolCall] | None = None) -> ExecResult:
        with self._lock:
            if self.closed:
                raise RuntimeError("sandbox is closed")
            notes = []
            if not self._child.alive():
                notes.append(self._restart("the interpreter had stopped"))
                if self._child.out_fd < 0:  # the host refused a new interpreter: nothing to run the code in
                    return ExecResult(observation=f"The sandbox could not run this step: {notes[-1]}",
                                      error="crash", notes=notes)
            res = self._run_cell(code, _Cell(recorded, live_fallback=True), self.config.timeout_s)
            res.notes[:0] = [n for n in notes if n]
            return res

    def replay(self, steps: Sequence[Step]) -> list[ExecResult]:
        """Fresh interpreter, then each action step's code in order with its recorded tool results."""
        self.reset()
        return [self.run(s.code, recorded=s.tool_calls) for s in steps if s.kind == "action" and s.code.strip()]

    def reset(self) -> None:
        with self._lock:
            if self.closed:
                raise RuntimeError("sandbox is closed")
            self._history.clear()
            self._child.close()
            self._child = self._spawn()
            self._send_tools()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self._child is not None:
                self._child.close()
            if self._lease is not None:
                self._lease.release()
        _LIVE.discard(self)
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort; close() is the contract
        try:
            self.close()
        except Exception:
            pass

    # -- internals -------------------------------------------------------------------------------
    def _spawn(self) -> ChildProcess:
        uid = self.config.uid if self.config.uid is not None else (self._lease.uid if self._lease else None)
        return ChildProcess(self.config, uid)

    def _send_tools(self) -> None:
        if self.tools:
            self._child.send({"type": "tools", "names": sorted(self.tools)})

    def _serve_tool(self, msg: dict, cell: _Cell) -> dict:
        name, args, kwargs = msg.get("name"), msg.get("args") or [], msg.get("kwargs") or {}
        idx = len(cell.calls)
        if idx < len(cell.recorded) and cell.recorded[idx].name == name:
            rec = cell.recorded[idx]
            if rec.args != args or rec.kwargs != kwargs:
                cell.notes.append(f"tool call {idx + 1} ({name}) served from the record although its arguments differ")
            cell.calls.append(rec.model_copy())
            return {"type": "tool_result", "result": rec.result}
        if cell.recorded:
            cell.notes.append(f"tool call {idx + 1} ({name}) had no matching recorded result: called the tool")
        fn = self.tools.get(name)
        if fn is None or not cell.live_fallback:
            return {"type": "tool_error", "error": f"no tool named {name!r} in this sandbox"}
        t0 = time.monotonic()
        try:
            result = str(fn(*args, **kwargs))  # in the host, outside the limits
        except Exception as e:  # a tool failure is the model's observation, not the host's crash
            return {"type": "tool_error", "error": f"{type(e).__name__}: {e}"}
        finally:
            cell.tool_seconds += time.monotonic() - t0
        cell.calls.append(ToolCall(name=name, args=list(args), kwargs=dict(kwargs), result=result))
        return {"type": "tool_result", "result": result}

    def _execute(self, code: str, cell: _Cell, timeout_s: float) -> tuple[str, dict | None]:
        """Run one cell. Returns (status, done-frame): status is "done", "timeout" or "crash: why"."""
        child = self._child
        child.clear_output()
        start = time.monotonic()
        try:
            child.send({"type": "run", "code": code})
            while True:
                # Time spent in host tools does not count against the code's timeout.
                msg = child.recv(start + timeout_s + cell.tool_seconds)
                if msg["type"] == "done":
                    return "done", msg
                if msg["type"] == "tool":
                    child.send(self._serve_tool(msg, cell))
                else:
                    raise ChannelError(f"unexpected control frame {msg['type']!r}")
        except TimeoutError:
            return "timeout", None
        except ChannelError as e:
            time.sleep(0.05)  # let a dying child finish dying so that its exit status is known
            why = child.exit_description() if not child.alive() else str(e)
            return f"crash: {why}", None

    def _run_cell(self, code: str, cell: _Cell, timeout_s: float) -> ExecResult:
        t0 = time.monotonic()
        status, done = self._execute(code, cell, timeout_s)
        max_chars = self.config.max_output_chars
        text, more = self._child.read_output(0, max_chars)
        if more:
            text = text.rstrip("\n") + f"\n... [output truncated: {more} more characters]"
        res = ExecResult(observation=text, seconds=0.0, tool_calls=cell.calls, notes=cell.notes)
        if status == "done":
            res.error = done.get("error")
            fa = done.get("final_answer")
            res.final_answer = fa if isinstance(fa, str) else None
            if res.error is None or res.error not in ("timeout", "crash"):
                self._history.append((code, list(cell.calls)))
            if not res.observation.strip():
                res.observation = "(no output)"
        else:
            # Still kill and restart even when the child is already dead: its uid may have children.
            timed_out = status == "timeout"
            restored = self._restart("" if timed_out else status)
            if timed_out:
                res.error, res.timed_out = "timeout", True
                msg = f"Timeout after {timeout_s:g} s: the code did not finish; "
            else:
                res.error = "crash"
                msg = f"The interpreter crashed ({status[len('crash: '):]}); "
            msg += restored or "interpreter state was restored from earlier steps"
            res.observation = (text.rstrip("\n") + "\n" + msg) if text.strip() else msg
        res.seconds = time.monotonic() - t0
        return res

    def _restart(self, why: str) -> str:
        """Kill, respawn, replay completed cells. Returns "" on success or a sentence on failure."""
        self._child.close()
        history, self._history = self._history, []
        try:
            self._child = self._spawn()
            self._send_tools()
        except (RuntimeError, ChannelError) as e:
            return f"restarting the interpreter failed: {e}"
        for i, (code, calls) in enumerate(history):
            cell = _Cell(calls, live_fallback=True)
            status, _ = self._execute(code, cell, self.config.timeout_s)
            if status != "done":
                self._child.close()
                self._child = self._spawn()
                self._send_tools()
                return (f"restoring the earlier state failed at step {i + 1} of {len(history)} ({status}); "
                        "the interpreter was restarted empty")
            self._history.append((code, cell.calls))
        return ""

