"""Child-side persistent interpreter: the loop that runs model code cells.

Like ``isolation.py`` this is source handed to ``python -I -c``, never imported by the host.
Protocol on the control pipe (fds 1000 in / 1001 out after isolation): frames are a 4-byte
big-endian length + UTF-8 JSON.
  host -> child: {"type": "run", "code": str} | {"type": "tools", "names": [...]}
                 | {"type": "tool_result", "result": str} | {"type": "tool_error", "error": str}
  child -> host: {"type": "ready", "report": {...}} | {"type": "tool", "name", "args", "kwargs"}
                 | {"type": "done", "error": None | str, "final_answer": None | str}
Output of the cells goes to fds 1/2, which the host pointed at a capture file before exec.
"""

import builtins
import json
import linecache
import os
import struct
import sys
import traceback

_MAX_FRAME = 16 * 1024 * 1024
_CELL = "<code>"
CHANNEL_BROKEN_STATUS = 70  # the host knows this exit status (process.py)
_NET_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyaddr", "socket.__new__"}


class _Channel:
    def __init__(self, fd_in, fd_out):
        self.fd_in, self.fd_out = fd_in, fd_out

    def send(self, obj):
        data = json.dumps(obj).encode()
        buf = struct.pack(">I", len(data)) + data
        while buf:
            buf = buf[os.write(self.fd_out, buf):]

    def _read(self, n):
        chunks = []
        while n:
            b = os.read(self.fd_in, n)
            if not b:
                os._exit(0)  # host went away: nothing left to serve
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    def recv(self):
        (n,) = struct.unpack(">I", self._read(4))
        if n > _MAX_FRAME:
            os._exit(3)
        return json.loads(self._read(n))


def _format_exception(exc, limit_lines=12):
    """The model-facing traceback: only frames of the model's own cells, last lines only."""
    te = traceback.TracebackException.from_exception(exc)
    frames = [f for f in te.stack if f.filename == _CELL]
    te.stack = traceback.StackSummary.from_list(frames)
    lines = "".join(te.format()).rstrip("\n").split("\n")
    if len(lines) > limit_lines:
        lines = ["Traceback (most recent call last, shortened):"] + lines[-(limit_lines - 1):]
    return "\n".join(lines)


def serve(ctl_in, ctl_out, spec, report):
    chan = _Channel(ctl_in, ctl_out)
    ns = {"__name__": "__main__", "__builtins__": builtins}
    cell = {"final": None, "n": 0}
    allowed = spec.get("allowed_imports")

    if report.get("network") == "audit-hook":
        def _audit(event, args):
            if event in _NET_EVENTS:
                raise PermissionError(f"network access is disabled in this sandbox ({event})")
        sys.addaudithook(_audit)

    if allowed is not None:
        allowed = frozenset(allowed)
        real_import = builtins.__import__

        def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
            # Only the model's own code is restricted; allowed modules import what they need.
            if globals is ns and (level != 0 or name.partition(".")[0] not in allowed):
                raise ImportError(f"import of '{name}' is not allowed; allowed modules: {', '.join(sorted(allowed))}")
            return real_import(name, globals, locals, fromlist, level)

        builtins.__import__ = _guarded_import

    def final_answer_print(answer):
        text = str(answer)
        print(text)
        if cell["final"] is None:
            cell["final"] = text

    def _make_tool(name):
        def tool(*args, **kwargs):
            try:
                chan.send({"type": "tool", "name": name, "args": list(args), "kwargs": kwargs})
            except TypeError as e:
                raise TypeError(f"{name}(): arguments must be plain JSON values ({e})") from None
            reply = chan.recv()
            if reply.get("type") == "tool_error":
                raise RuntimeError(f"{name} failed: {reply.get('error')}")
            return reply.get("result", "")
        tool.__name__ = name
        return tool

    ns["final_answer_print"] = final_answer_print
    chan.send({"type": "ready", "report": report})
    while True:
        msg = chan.recv()
        kind = msg.get("type")
        if kind == "tools":
            for name in msg["names"]:
                ns[name] = _make_tool(name)
            continue
        if kind != "run":
            continue
        cell["final"], error = None, None
        code = msg["code"]
        # Make tracebacks show the model's source lines.
        linecache.cache[_CELL] = (len(code), None, code.splitlines(True), _CELL)
        try:
            exec(compile(code, _CELL, "exec"), ns)
        except SystemExit as e:
            error = "SystemExit"
            print(f"SystemExit: the code called sys.exit({'' if e.code is None else repr(e.code)}); "
                  "the interpreter keeps running", file=sys.stderr)
        except BaseException as e:  # noqa: BLE001 - every failure of model code is an observation
            error = type(e).__name__
            try:
                print(_format_exception(e), file=sys.stderr)
            except BaseException:  # noqa: BLE001 - e.g. output file full: the host reports it
                pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        chan.send({"type": "done", "error": error, "final_answer": cell["final"]})


def main():
    spec = json.loads(sys.argv[1])
    ctl_in, ctl_out, report = isolate(spec)  # noqa: F821 - defined by isolation.py, prepended by the host
    try:
        serve(ctl_in, ctl_out, spec, report)
    except BaseException:  # noqa: BLE001 - model code broke the control channel: the host reports it
        os._exit(CHANNEL_BROKEN_STATUS)


if __name__ == "__main__":
    main()
