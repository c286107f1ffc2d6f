"""A real HTTP server speaking the OpenAI chat-completions protocol, with injectable faults.

Used by tests of every remote-model client (teachers, judges, :class:`OpenAIPolicy`) where the
real thing (a 72B teacher behind vLLM) cannot run. It is a real socket server on 127.0.0.1, so
clients are exercised end to end: HTTP, JSON, headers, timeouts, dropped connections.

Usage::

    from score_distill.testing import FakeOpenAIServer, Fault

    def responder(req: dict) -> str | Fault:          # req: the parsed JSON request body
        return "<thought>ok</thought>"                # or a Fault for this one request

    with FakeOpenAIServer(responder, faults=[Fault.status(500), Fault.timeout(5)]) as srv:
        client = OpenAIPolicy(srv.base_url, "fake-model", ...)   # srv.base_url ends in /v1
        ...
        srv.requests          # list[RecordedRequest] (method, path, headers with lower-case names,
                              # body, json, received_at), in arrival order
        srv.max_in_flight     # the most chat requests handled at the same time

Endpoints: ``POST /v1/chat/completions`` (answer in ``choices[0].message.content``, ``usage`` with
whitespace-token counts, ``n`` choices when the request asks for ``n``) and ``GET /v1/models``.

Faults (``Fault``): ``faults=`` is a FIFO queue, one fault consumed per chat request in arrival
order before the responder is asked; the responder may also return a Fault. Kinds:

* ``Fault.delay(s)`` / ``Fault.timeout(s)``: sleep ``s`` seconds, then answer normally (a timeout
  is a delay longer than the client's timeout);
* ``Fault.reset()``: close the socket without any response;
* ``Fault.status(code, retry_after=None, body=None)``: e.g. 429 with ``Retry-After``, 400, 500, 503;
* ``Fault.malformed()``: 200 with a body that is not JSON;
* ``Fault.truncated()``: 200 with a JSON body cut in the middle (complete HTTP message);
* ``Fault.empty()``: 200 with ``content: ""``;
* ``Fault.no_choices()``: 200 with valid JSON that lacks ``choices`` (wrong schema).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict], "str | Fault"]


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for one request. Build with the class methods."""

    kind: str  # delay | reset | status | malformed | truncated | empty | no_choices
    seconds: float = 0.0
    status_code: int = 500
    retry_after: float | None = None
    body: str | None = None

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls("delay", seconds=seconds)

    timeout = delay  # a timeout is a delay longer than the client waits

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def status(cls, code: int, retry_after: float | None = None, body: str | None = None) -> Fault:
        return cls("status", status_code=code, retry_after=retry_after, body=body)

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated")

    @classmethod
    def empty(cls) -> Fault:
        return cls("empty")

    @classmethod
    def no_choices(cls) -> Fault:
        return cls("no_choices")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: str
    json: Any = None
    received_at: float = field(default_factory=time.monotonic)


def _count_tokens(text: str) -> int:
    return len(text.split())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers; clients pool connections
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # silent: test output stays clean and headers (API keys) are never printed

    # -- plumbing -------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (timeout): nothing to do

    def _send_json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), headers)

    def _record(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            parsed = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            parsed = None
        headers = {k.lower(): v for k, v in self.headers.items()}  # HTTP names are case-insensitive
        rec = RecordedRequest(self.command, self.path, headers, raw, parsed)
        with self.server.lock:
            self.server.requests.append(rec)
        return rec

    # -- endpoints ------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._record()
        if self.path.rstrip("/") == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.server.model_names]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        rec = self._record()
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        if not isinstance(rec.json, dict):
            self._send_json(400, {"error": {"message": "body is not a JSON object", "type": "invalid_request"}})
            return
        srv = self.server
        with srv.lock:
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            fault = srv.faults.popleft() if srv.faults else None
        try:
            self._answer(rec.json, fault)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _answer(self, req: dict, fault: Fault | None) -> None:
        srv = self.server
        if fault is not None and fault.kind == "delay":
            if srv.stopping.wait(fault.seconds):
                self.close_connection = True
                return
            fault = None
        if fault is None:
            try:
                result = srv.responder(req)
            except Exception as e:  # a buggy responder is a 500, as from a real server
                self._send_json(500, {"error": {"message": f"responder failed: {e!r}", "type": "server_error"}})
                return
            if isinstance(result, Fault):
                fault = result
                if fault.kind == "delay":
                    if srv.stopping.wait(fault.seconds):
                        self.close_connection = True
                        return
                    fault = None
                    result = srv.responder(req)
            if fault is None:
                self._send_json(200, self._completion(req, str(result)))
                return

        kind = fault.kind
        if kind == "reset":
            # SO_LINGER 0 makes close() send RST: the client sees "connection reset", no response.
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close_connection = True
            self.connection.close()
        elif kind == "status":
            headers = {}
            if fault.retry_after is not None:
                ra = fault.retry_after
                headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            body = fault.body or json.dumps(
                {"error": {"message": f"injected status {fault.status_code}", "type": "fake_fault",
                           "code": fault.status_code}}
            )
            self._send(fault.status_code, body.encode(), headers)
        elif kind == "malformed":
            self._send(200, b"<html>502 Bad Gateway</html> not json {")
        elif kind == "truncated":
            full = json.dumps(self._completion(req, "this answer was cut")).encode()
            self._send(200, full[: len(full) // 2])
        elif kind == "empty":
            self._send_json(200, self._completion(req, ""))
        elif kind == "no_choices":
            self._send_json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": req.get("model"),
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}})
        else:
            raise ValueError(f"unknown Fault kind {kind!r}")

    def _completion(self, req: dict, text: str) -> dict:
        srv = self.server
        with srv.lock:
            srv.counter += 1
            cid = srv.counter
        n = int(req.get("n") or 1)
        prompt = " ".join(str(m.get("content", "")) for m in req.get("messages", []) if isinstance(m, dict))
        choices = [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
             "logprobs": None}
            for i in range(n)
        ]
        pt, ct = _count_tokens(prompt), _count_tokens(text) * n
        return {
            "id": f"chatcmpl-fake-{cid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model", "fake-model"),
            "choices": choices,
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in a delay must not block shutdown
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: with more concurrent clients on a loaded machine the kernel
    # drops SYNs, the client's retransmit (1 s) outlasts short test timeouts, and an attempt that never reached
    # the server is counted by the client only. Real servers listen with a deep backlog too.
    request_queue_size = 128
    responder: Responder
    faults: deque[Fault]
    requests: list[RecordedRequest]
    model_names: list[str]
    lock: threading.Lock
    stopping: threading.Event
    in_flight: int
    max_in_flight: int
    counter: int


def _echo(req: dict) -> str:
    msgs = req.get("messages") or [{}]
    return str(msgs[-1].get("content", ""))


class FakeOpenAIServer:
    """See the module docstring. ``responder`` defaults to echoing the last message."""

    def __init__(
        self,
        responder: Responder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: Iterable[Fault] = (),
        model_names: Iterable[str] = ("fake-model",),
    ):
        self._srv = _Server((host, port), _Handler)
        self._srv.responder = responder or _echo
        self._srv.faults = deque(faults)
        self._srv.requests = []
        self._srv.model_names = list(model_names)
        self._srv.lock = threading.Lock()
        self._srv.stopping = threading.Event()
        self._srv.in_flight = 0
        self._srv.max_in_flight = 0
        self._srv.counter = 0
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="fake-openai-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._srv.stopping.set()
        if self._thread is not None:
            self._srv.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._srv.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection / control -------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._srv.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._srv.lock:
            return list(self._srv.requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST"]

    @property
    def max_in_flight(self) -> int:
        return self._srv.max_in_flight

    def add_faults(self, *faults: Fault) -> None:
        with self._srv.lock:
            self._srv.faults.extend(faults)

    @property
    def responder(self) -> Responder:
        return self._srv.responder

    @responder.setter
    def responder(self, fn: Responder) -> None:
        self._srv.responder = fn
