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
        srv.max_copies_in_flight  # the most copies of one identical request handled at the same time

Endpoints: ``POST /v1/chat/completions`` (answer in ``choices[0].message.content``, ``usage`` with
whitespace-token counts, ``n`` choices when the request asks for ``n``; with ``"stream": true`` the
answer comes as server-sent events, one word a chunk, then the usage chunk when
``stream_options.include_usage`` asks for it, then ``[DONE]``) and ``GET /v1/models``.

A slow, single-slot server like a default llama.cpp one: ``slots=1`` serves one chat request at a time
(the others wait in arrival order, and one whose client hung up meanwhile is dropped unserved, as real
servers do); ``token_delay=s`` makes each word of an answer take ``s`` seconds to generate.

Faults (``Fault``): ``faults=`` is a FIFO queue, one fault consumed per chat request in arrival
order before the responder is asked; the responder may also return a Fault. Kinds:

* ``Fault.delay(s)`` / ``Fault.timeout(s)``: sleep ``s`` seconds, then answer normally (a timeout
  is a delay longer than the client's timeout);
* ``Fault.reset()``: close the socket without any response;
* ``Fault.status(code, retry_after=None, body=None)``: e.g. 429 with ``Retry-After``, 400, 500, 503;
* ``Fault.malformed()``: 200 with a body that is not JSON;
* ``Fault.truncated()``: 200 with a JSON body cut in the middle (complete HTTP message);
* ``Fault.empty()``: 200 with ``content: ""``;
* ``Fault.no_choices()``: 200 with valid JSON that lacks ``choices`` (wrong schema);
* ``Fault.interrupted()``: streamed, half the words then ``[DONE]`` with no ``finish_reason`` (what
  llama-cpp-python sends when another request waits for its slot); whole replies are not affected.

Streamed, ``malformed`` sends an event whose data is not JSON, ``truncated`` breaks the connection
half-way through the events, ``no_choices`` sends chunks without ``choices``. A delay ends early when
the client hangs up.
"""

from __future__ import annotations

import json
import select
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

    kind: str  # delay | reset | status | malformed | truncated | empty | no_choices | interrupted
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

    @classmethod
    def interrupted(cls) -> Fault:
        return cls("interrupted")


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
            srv.copies[rec.body] = srv.copies.get(rec.body, 0) + 1
            srv.max_copies_in_flight = max(srv.max_copies_in_flight, srv.copies[rec.body])
            fault = srv.faults.popleft() if srv.faults else None
        try:
            if srv.slot_sem is None:
                self._answer(rec.json, fault)
            else:
                self._answer_in_slot(rec.json, fault)
        finally:
            with srv.lock:
                srv.in_flight -= 1
                srv.copies[rec.body] -= 1

    def _answer_in_slot(self, req: dict, fault: Fault | None) -> None:
        srv = self.server
        while not srv.slot_sem.acquire(timeout=0.02):  # queued behind the request being served
            if srv.stopping.is_set() or self._client_gone():
                self.close_connection = True
                with srv.lock:
                    srv.dropped += 1
                return
        try:
            self._answer(req, fault)
        finally:
            srv.slot_sem.release()

    def _client_gone(self) -> bool:
        """The client closed its end (it gave up): readable with nothing to read."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False when the server stops or the client hangs up first."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return True
            if self.server.stopping.wait(min(left, 0.02)) or self._client_gone():
                self.close_connection = True
                return False

    def _answer(self, req: dict, fault: Fault | None) -> None:
        srv = self.server
        if fault is not None and fault.kind == "delay":
            if not self._wait(fault.seconds):
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
                    if not self._wait(fault.seconds):
                        return
                    fault = None
                    result = srv.responder(req)
            if fault is None:
                if req.get("stream"):
                    self._stream(req, str(result))
                elif self._wait(srv.token_delay * _count_tokens(str(result))):
                    self._send_json(200, self._completion(req, str(result)))
                return
        if fault.kind == "interrupted" and not req.get("stream"):
            self._send_json(200, self._completion(req, str(srv.responder(req))))
            return
        if req.get("stream") and fault.kind in ("malformed", "truncated", "empty", "no_choices", "interrupted"):
            self._stream(req, "" if fault.kind == "empty" else "this answer was cut", fault.kind)
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

    def _stream(self, req: dict, text: str, fault: str | None = None) -> None:
        """Server-sent events over chunked transfer encoding, as vLLM and llama.cpp send them."""
        srv = self.server
        with srv.lock:
            srv.counter += 1
            cid = srv.counter
        head = {"id": f"chatcmpl-fake-{cid}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": req.get("model", "fake-model")}
        words = text.split(" ") if text else []
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]

        def choice(delta: dict, finish: str | None = None) -> dict:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

        events: list[str] = [json.dumps(choice({"role": "assistant", "content": ""}))]
        events += [json.dumps(choice({"content": p})) for p in pieces]
        events.append(json.dumps(choice({}, "stop")))
        if fault == "no_choices":
            events = [json.dumps({**head, "note": "no choices here"})]
        if fault == "interrupted":
            events = events[: 1 + len(pieces) // 2]
        if (req.get("stream_options") or {}).get("include_usage"):
            prompt = " ".join(str(m.get("content", "")) for m in req.get("messages", []) if isinstance(m, dict))
            pt, ct = _count_tokens(prompt), _count_tokens(text)
            usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
            events.append(json.dumps({**head, "choices": [], "usage": usage}))
        events.append("[DONE]")
        if fault == "malformed":
            events.insert(1, "<html>502 Bad Gateway</html> not json {")
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, ev in enumerate(events):
                if fault == "truncated" and i == len(events) // 2:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the chunked message never completes
                    return
                if 0 < i <= len(pieces) and not self._wait(srv.token_delay):
                    return
                data = f"data: {ev}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up

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
    copies: dict[str, int]
    max_copies_in_flight: int
    dropped: int
    slot_sem: threading.Semaphore | None
    token_delay: float


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
        slots: int | None = None,
        token_delay: float = 0.0,
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
        self._srv.copies = {}
        self._srv.max_copies_in_flight = 0
        self._srv.dropped = 0
        self._srv.slot_sem = threading.Semaphore(slots) if slots else None
        self._srv.token_delay = token_delay
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        from score_distill.models.endpoints import forget_endpoint

        forget_endpoint(self.base_url)  # a new server on a port an old one used is a new endpoint
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

    @property
    def max_copies_in_flight(self) -> int:
        return self._srv.max_copies_in_flight

    @property
    def dropped(self) -> int:
        """Queued requests dropped unserved because their client hung up (``slots`` only)."""
        return self._srv.dropped

    def add_faults(self, *faults: Fault) -> None:
        with self._srv.lock:
            self._srv.faults.extend(faults)

    @property
    def responder(self) -> Responder:
        return self._srv.responder

    @responder.setter
    def responder(self, fn: Responder) -> None:
        self._srv.responder = fn
