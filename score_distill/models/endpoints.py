"""What the client learns about one OpenAI-compatible endpoint, shared by every policy, thread and event loop
that talks to it: how many requests it may have in flight, when it last produced anything, and which
structured-output mode it accepts.

An endpoint is a (base URL, model) pair. The state lives for the process; :func:`forget_endpoint` drops it
(a new server started on a port that an old one used is a new endpoint).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

log = logging.getLogger(__name__)

# Structured-output modes, most constrained first. json_object carries the schema too: llama.cpp servers
# constrain decoding to it, others read json_object as "any JSON object".
STRUCTURED_MODES = ("json_schema", "json_object", "text")


class EndpointSlots:
    """A counting semaphore that works across event loops and threads (asyncio's is bound to one loop).

    Each ``generate`` call runs on its own loop, possibly in its own thread; the endpoint's limit holds
    over all of them. Waiters are served first come, first served.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.in_use < self.limit and not self._waiters:
                self.in_use += 1
                return
            fut = loop.create_future()
            self._waiters.append((loop, fut))
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, fut))
                    granted = False
                except ValueError:
                    granted = True  # the slot was handed over while we were being cancelled
            if granted and fut.done() and not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            if self.in_use > self.limit:  # the limit was lowered: this slot goes away
                self.in_use -= 1
                return
            while self._waiters:
                loop, fut = self._waiters.popleft()
                if loop.is_closed():
                    continue
                loop.call_soon_threadsafe(self._grant, fut)  # the slot passes to the waiter as is
                return
            self.in_use -= 1

    def _grant(self, fut: asyncio.Future) -> None:
        if fut.done():  # cancelled before it could take the slot: pass it on
            self.release()
        else:
            fut.set_result(None)

    def set_limit(self, limit: int) -> None:
        with self._lock:
            grow = max(0, limit - self.limit)
            self.limit = limit
        for _ in range(grow):  # let waiters take the new slots
            with self._lock:
                if not self._waiters or self.in_use >= self.limit:
                    break
                self.in_use += 1
            self.release()


class EndpointState:
    """See the module docstring. ``last_progress`` is the monotonic time of the last byte of content the
    endpoint sent on any request (a streamed token, a finished reply)."""

    def __init__(self, key: tuple[str, str], limit: int):
        self.key = key
        self.slots = EndpointSlots(limit)
        self.last_progress = 0.0
        self.lock = threading.Lock()
        self.mode_index = 0  # into STRUCTURED_MODES
        self.mode_settled = False  # a request in this mode was answered
        self.mode_reason = ""  # why the endpoint is below json_schema

    @property
    def mode(self) -> str:
        return STRUCTURED_MODES[self.mode_index]

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    def downgrade(self, from_mode: str, reason: str, name: str) -> str:
        """The endpoint refused ``from_mode``: step below it (once, whoever sees the refusal first) and
        return the mode to send next."""
        with self.lock:
            if self.mode == from_mode and self.mode_index < len(STRUCTURED_MODES) - 1:
                self.mode_index += 1
                self.mode_settled = False
                self.mode_reason = f"{from_mode} refused: {reason}"
                log.warning("%s at %s: the server refused response_format %s (%s); trying %s",
                            name, self.key[0], from_mode, reason[:200], self.mode)
            return self.mode

    def settle(self, mode: str, name: str) -> None:
        with self.lock:
            if self.mode_settled or mode != self.mode:
                return
            self.mode_settled = True
        how = "no response_format, replies parsed strictly" if mode == "text" else f"response_format {mode}"
        # A warning so that it reaches the run's output without any logging set-up: it says how replies
        # are constrained, which decides how often they fail to parse.
        log.warning("%s at %s: structured output mode %s (%s)%s", name, self.key[0], mode, how,
                    f"; {self.mode_reason[:200]}" if self.mode_reason else "")


_REGISTRY: dict[tuple[str, str], EndpointState] = {}
_REGISTRY_LOCK = threading.Lock()


def endpoint_state(base_url: str, model: str, limit: int) -> EndpointState:
    """The shared state of (base_url, model). Several policies on one endpoint share its concurrency
    limit; the smallest configured limit wins (a single-slot server configured once stays protected)."""
    key = (base_url.rstrip("/"), model)
    with _REGISTRY_LOCK:
        st = _REGISTRY.get(key)
        if st is None:
            st = _REGISTRY[key] = EndpointState(key, limit)
        elif limit < st.slots.limit:
            st.slots.set_limit(limit)
        return st


def forget_endpoint(base_url: str) -> None:
    """Drop what was learnt about every model at ``base_url``."""
    base = base_url.rstrip("/")
    with _REGISTRY_LOCK:
        for key in [k for k in _REGISTRY if k[0] == base]:
            del _REGISTRY[key]
