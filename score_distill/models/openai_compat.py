"""Policy backend for any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp server, hosted APIs).

Built on the official ``openai`` client (transport, auth, error classes) with its own retries
turned off: ours are bounded, exponential with jitter, honour ``Retry-After`` and also cover what
the client does not retry (a 200 whose body is not the expected JSON). One failed request never
raises: after the last attempt it comes back as ``Completion(error=..., finish_reason="error")``.

What the endpoint accepts is learnt once and shared (see :mod:`.endpoints`): the structured-output
mode (``response_format`` json_schema, then json_object, then none with the strict parser), and the
number of requests it may have in flight. Replies are streamed; a request is abandoned as timed out
only when the endpoint has sent nothing, on any request, for ``timeout_s`` (a request queued behind
others on a busy server is waiting, not lost, and is never sent a second time while the server is
still producing). A request the server refuses (HTTP 4xx, or a 500 whose message is a validation
error) fails at once with the server's reason; only transport faults, 429 and other 5xx are retried.

The API key is read from an environment variable only and is never stored in ``repr()``, logs or
error messages (messages are scrubbed of it in case a server echoes it back).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import importlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import openai

from score_distill.models.base import Chat, Completion, SamplingParams
from score_distill.models.endpoints import STRUCTURED_MODES, endpoint_state

log = logging.getLogger(__name__)

# Local servers (vLLM, llama.cpp) accept any key but the client insists on one.
_NO_KEY_PLACEHOLDER = "EMPTY"
_MAX_RETRY_AFTER_S = 120.0


@dataclass
class Usage:
    """Running totals for one policy (all threads). ``failures`` counts final failures by cause;
    ``retries`` counts retried attempts by cause."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    failures: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "seconds": round(self.seconds, 3), "failures": dict(self.failures), "retries": dict(self.retries)}


class _Retryable(Exception):
    def __init__(self, cause: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.cause = cause
        self.retry_after = retry_after


class _FormatRefused(Exception):
    """The server refused the request's response_format."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


class _Permanent(Exception):
    def __init__(self, cause: str, message: str, status: int | None = None):
        super().__init__(message)
        self.cause = cause
        self.status = status


def _parse_retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:  # HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _closing_tag_fix(text: str, stops: list[str]) -> str:
    """Servers drop the stop string; put back a closing tag (e.g. ``</code>``) left open by the stop,
    so both backends return the same text (the HF backend keeps closing tags)."""
    for s in stops:
        if s.startswith("</") and s.endswith(">"):
            opener = "<" + s[2:]
            if text.count(opener) > text.count(s):
                return text + s
    return text


# Words by which a refusal names the structured-output request, whatever the status code (llama-cpp-python
# answers an unknown response_format type with HTTP 500 "Input should be 'text' or 'json_object'").
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "guided_json", "grammar", "structured output")
# A 500 whose message reads as input validation is the server refusing this request, not failing at it.
_REFUSAL_WORDS = ("validation error", "input should be", "extra inputs are not permitted", "field required",
                  "not supported", "unsupported", "invalid request")
_TRANSIENT_STATUS = (408, 502, 503, 504)


def _transport_error_types() -> tuple[type[BaseException], ...]:
    # openai's transport is httpx or, in later releases, httpx2; mid-stream breaks may surface unwrapped.
    found = []
    for mod in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(mod).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found) or (OSError,)


_TRANSPORT_ERRORS = _transport_error_types()

# What each transient cause says about the endpoint, for messages that must not call a refusal unreachable.
TRANSIENT_CAUSES = {
    "timeout": "sent nothing for longer than the timeout",
    "connection": "could not be reached",
    "server_error": "answered with server errors (HTTP 5xx)",
    "rate_limit": "kept rate-limiting the requests (HTTP 429)",
}


def describe_transient(causes: Counter | dict[str, int]) -> str:
    """'could not be reached (connection: 4)' or 'sent nothing ... (timeout: 2), answered ... (server_error: 1)'."""
    parts = [f"{TRANSIENT_CAUSES.get(c, c)} ({c}: {n})" for c, n in Counter(causes).most_common()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _error_message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") or inner.get("detail") if isinstance(inner, dict) else inner
        if msg:
            return str(msg)[:300]
    text = (e.response.text or "").strip()
    return (text or str(e))[:300]


class OpenAIPolicy:
    """``generate(chats, params)`` against ``{base_url}/chat/completions``; see the module docstring.

    ``max_concurrency`` bounds the requests in flight to this endpoint (base URL and model) over every
    policy and thread of the process: set it to the server's slots (1 for a default llama.cpp server).
    ``timeout_s``: how long the endpoint may stay silent (no token on any request) before a waiting
    request is abandoned and retried. ``structured_output``: 'auto' negotiates json_schema, json_object,
    text from what the server accepts; a named mode is sent as is. ``stream=False`` asks for whole replies
    (then only finished replies count as the endpoint's progress). ``params.n`` > 1 is sent as ``n``
    separate requests (seeds ``seed + i``): many servers ignore ``n``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        name: str | None = None,
        *,
        stream: bool = True,
        structured_output: str = "auto",
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if structured_output != "auto" and structured_output not in STRUCTURED_MODES:
            raise ValueError(f"structured_output must be 'auto' or one of {STRUCTURED_MODES}, "
                             f"got {structured_output!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.stream = stream
        self.structured_output = structured_output
        self.name = name or f"openai:{model}"
        self.usage = Usage()
        self.endpoint = endpoint_state(self.base_url, model, max_concurrency)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"OpenAIPolicy(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
                f"max_concurrency={self.max_concurrency}, timeout_s={self.timeout_s}, max_retries={self.max_retries}, "
                f"stream={self.stream}, structured_output={self.structured_output!r})")

    @property
    def structured_output_mode(self) -> str:
        """The mode requests with a JSON schema are sent in now."""
        return self.endpoint.mode if self.structured_output == "auto" else self.structured_output

    @property
    def schema_supported(self) -> bool:
        return self.structured_output_mode == "json_schema"

    # -- key handling ---------------------------------------------------------------------
    def _api_key(self) -> str:
        return os.environ.get(self.api_key_env) or _NO_KEY_PLACEHOLDER

    def _scrub(self, message: str) -> str:
        key = os.environ.get(self.api_key_env)
        if key and key in message:
            message = message.replace(key, "***")
        return message

    def _client(self) -> openai.AsyncOpenAI:
        # One client per event loop: the underlying HTTP pool is bound to the loop that made it. No read
        # timeout: the silence watchdog (_watched) decides, so a reply still streaming is never cut.
        timeout = openai.Timeout(None, connect=self.timeout_s, write=self.timeout_s)
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key(), max_retries=0, timeout=timeout)

    # -- public API -----------------------------------------------------------------------
    def generate(self, chats: list[Chat], params: SamplingParams) -> list[Completion]:
        return _run_sync(self._generate_async(chats, params))

    def ping(self) -> str | None:
        """None when the server answers GET /models and serves ``model``; otherwise the reason."""
        return _run_sync(self._ping_async())

    # -- internals ------------------------------------------------------------------------
    async def _ping_async(self) -> str | None:
        client = self._client()
        try:
            # The client has no read timeout (see _client): a server that accepts and never answers is bounded here.
            page = await asyncio.wait_for(client.models.list(), self.timeout_s)
            ids = [m.id for m in page.data]
        except TimeoutError:
            return f"{self.base_url}/models did not answer within {self.timeout_s:g}s"
        except openai.APIStatusError as e:
            return self._scrub(f"{self.base_url}/models answered HTTP {e.status_code}: {_error_message(e)}")
        except openai.APIError as e:
            return self._scrub(f"{self.base_url} unreachable: {type(e).__name__}: {e}")
        finally:
            await client.close()
        if ids and self.model not in ids:
            return f"model {self.model!r} not served by {self.base_url} (it serves: {', '.join(ids[:10])})"
        return None

    async def _generate_async(self, chats: list[Chat], params: SamplingParams) -> list[Completion]:
        client = self._client()
        jobs = [(chat, i) for chat in chats for i in range(params.n)]
        out: list[Completion] = []
        try:
            negotiating = params.json_schema is not None and self.structured_output == "auto"
            if jobs and negotiating and not self.endpoint.mode_settled:
                # The first request settles the mode alone: a refusal is met once, not by every request in flight.
                out.append(await self._request(client, *jobs[0], params))
                jobs = jobs[1:]
            out.extend(await asyncio.gather(*(self._request(client, chat, i, params) for chat, i in jobs)))
            return out
        finally:
            await client.close()

    def _body(self, chat: Chat, params: SamplingParams, sample: int, mode: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            # Not in the OpenAI spec; vLLM and SGLang read them from the body.
            "extra_body": {"top_k": params.top_k, "repetition_penalty": params.repetition_penalty},
        }
        if params.stop:
            kw["stop"] = list(params.stop)
        if params.seed is not None:
            kw["seed"] = params.seed + sample
        if mode == "json_schema":
            kw["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": "answer", "schema": params.json_schema, "strict": True}}
        elif mode == "json_object":
            # "schema" is llama.cpp's extension (it constrains decoding to it); other servers ignore it.
            kw["response_format"] = {"type": "json_object", "schema": params.json_schema}
        if self.stream:
            kw["stream"] = True
            kw["stream_options"] = {"include_usage": True}
        return kw

    async def _request(self, client: openai.AsyncOpenAI, chat: Chat, sample: int,
                       params: SamplingParams) -> Completion:
        t0 = time.monotonic()
        attempt = 0
        while True:
            mode = self.structured_output_mode if params.json_schema is not None else None
            try:
                await self.endpoint.slots.acquire()
                try:
                    comp = await self._watched(client, self._body(chat, params, sample, mode), mode)
                finally:
                    self.endpoint.slots.release()
            except _FormatRefused as e:
                if self.structured_output == "auto" and mode != "text":
                    self.endpoint.downgrade(mode, self._scrub(str(e)), self.name)
                    continue  # not an attempt: the same request in the next mode (at most twice)
                return self._failed(e.cause, self._scrub(f"the endpoint refused response_format {mode} ({e})"),
                                    t0, permanent=True)
            except _Permanent as e:
                return self._failed(e.cause, self._scrub(str(e)), t0, permanent=True)
            except _Retryable as e:
                last_cause, last_msg = e.cause, self._scrub(str(e))
                if attempt >= self.max_retries:
                    return self._failed(last_cause, f"{last_msg} (gave up after {attempt + 1} attempts)", t0)
                delay = self.backoff_s * (2**attempt) * random.uniform(0.5, 1.0)
                if e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, _MAX_RETRY_AFTER_S))
                with self._lock:
                    self.usage.retries[e.cause] += 1
                log.info("%s: %s; retry %d/%d in %.2fs", self.name, last_msg, attempt + 1, self.max_retries, delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            except Exception as e:  # anything unforeseen fails this request only, not the whole batch
                return self._failed("unexpected", self._scrub(f"{type(e).__name__}: {e}"), t0)
            if mode is not None and self.structured_output == "auto":
                self.endpoint.settle(mode, self.name)
            comp.seconds = time.monotonic() - t0
            comp.text = _closing_tag_fix(comp.text, params.stop) if comp.finish_reason == "stop" else comp.text
            comp.extra["attempts"] = attempt + 1
            if mode is not None:
                comp.extra["structured_output"] = mode
            with self._lock:
                self.usage.calls += 1
                self.usage.prompt_tokens += comp.prompt_tokens
                self.usage.completion_tokens += comp.completion_tokens
                self.usage.seconds += comp.seconds
            return comp

    def _failed(self, cause: str, message: str, t0: float, permanent: bool = False) -> Completion:
        seconds = time.monotonic() - t0
        with self._lock:
            self.usage.calls += 1
            self.usage.seconds += seconds
            self.usage.failures[cause] += 1
        log.warning("%s: request failed: %s", self.name, message)
        # ``permanent``: the server refused this request; sending it again unchanged gets the same answer.
        return Completion(text="", finish_reason="error", error=f"{cause}: {message}", seconds=seconds,
                          extra={"permanent": permanent})

    async def _watched(self, client: openai.AsyncOpenAI, body: dict[str, Any], mode: str | None) -> Completion:
        """One attempt, abandoned (closing its connection) once the endpoint has been silent for timeout_s."""
        start = time.monotonic()
        task = asyncio.ensure_future(self._attempt(client, body, mode))
        poll = min(0.25, self.timeout_s / 4)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=poll)
                if done:
                    return task.result()
                if time.monotonic() - max(start, self.endpoint.last_progress) >= self.timeout_s:
                    raise _Retryable("timeout", f"no answer: {self.base_url} sent nothing on any request for "
                                     f"{self.timeout_s:g}s")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _attempt(self, client: openai.AsyncOpenAI, body: dict[str, Any], mode: str | None) -> Completion:
        try:
            if not body.get("stream"):
                raw = await client.chat.completions.with_raw_response.create(**body)
                comp = self._parse(raw.http_response.text)
                self.endpoint.progress()
                return comp
            stream = await client.chat.completions.create(**body)
        except openai.APITimeoutError as e:
            raise _Retryable("timeout", f"could not connect to {self.base_url} within {self.timeout_s:g}s") from e
        except openai.APIConnectionError as e:
            raise _Retryable("connection", f"could not connect to {self.base_url}: {e.__cause__ or e}") from e
        except openai.APIStatusError as e:
            raise self._classify(e, mode) from e
        try:
            async with stream:
                return await self._read_stream(stream)
        except openai.APIStatusError as e:
            raise self._classify(e, mode) from e
        except openai.APIConnectionError as e:  # the connection broke while the reply was streaming
            raise _Retryable("bad_response", f"the reply stream was cut ({e.__cause__ or e})") from e
        except openai.APIError as e:  # an error event inside the stream
            raise _Retryable("server_error", f"the endpoint reported an error while answering: {e}") from e
        except json.JSONDecodeError as e:
            raise _Retryable("bad_response", f"a stream event is not JSON ({e.msg} at char {e.pos})") from None
        except _TRANSPORT_ERRORS as e:  # the HTTP library's own error, when the client does not wrap it
            raise _Retryable("bad_response", f"the reply stream was cut ({type(e).__name__}: {e})") from e

    def _classify(self, e: openai.APIStatusError, mode: str | None) -> Exception:
        code = e.status_code
        msg = _error_message(e)
        detail = f"HTTP {code}: {msg}"
        low = msg.lower()
        # A bare 400/422 counts as a refused format only until the endpoint has accepted this mode once:
        # after that, it is this request that is refused (too long a prompt...), not the format.
        unproven = not self.endpoint.mode_settled or self.structured_output != "auto"
        if mode in ("json_schema", "json_object") and (
                any(w in low for w in _FORMAT_WORDS) or (code in (400, 422) and unproven)):
            return _FormatRefused(f"http_{code}", detail)
        if code == 429:
            return _Retryable("rate_limit", f"rate-limited ({detail})", _parse_retry_after(e.response.headers))
        if code in _TRANSIENT_STATUS or (code >= 500 and code != 501 and not any(w in low for w in _REFUSAL_WORDS)):
            return _Retryable("server_error", f"the endpoint failed to answer ({detail})",
                              _parse_retry_after(e.response.headers))
        return _Permanent(f"http_{code}", f"the endpoint rejected the request ({detail})", status=code)

    async def _read_stream(self, stream: Any) -> Completion:
        if "application/json" in stream.response.headers.get("content-type", ""):
            # A server that ignores ``stream`` answers with one JSON body.
            comp = self._parse((await stream.response.aread()).decode("utf-8", "replace"))
            self.endpoint.progress()
            return comp
        parts: list[str] = []
        finish: str | None = None
        usage: Any = None
        n_chunks = 0
        saw_choice = False
        async for chunk in stream:
            self.endpoint.progress()
            usage = getattr(chunk, "usage", None) or usage
            for ch in getattr(chunk, "choices", None) or []:
                if getattr(ch, "index", 0) != 0:
                    continue
                saw_choice = True
                delta = getattr(ch, "delta", None)
                piece = getattr(delta, "content", None) if delta is not None else None
                if isinstance(piece, str) and piece:
                    parts.append(piece)
                    n_chunks += 1
                finish = getattr(ch, "finish_reason", None) or finish
        if not saw_choice:
            raise _Retryable("bad_response", "the reply stream had no 'choices'")
        if finish is None:
            # llama-cpp-python ends a streamed reply this way when another request waits for its one slot
            # (its default --interrupt_requests): the text is a cut-off prefix, not an answer.
            raise _Retryable("bad_response", "the server ended the reply stream before the reply was finished (no "
                             "finish_reason); a llama-cpp-python server does this while another request waits: "
                             "start it with --interrupt_requests false, or set max_concurrency to 1")
        comp = Completion(text="".join(parts), finish_reason="length" if finish == "length" else "stop")
        if usage is not None:
            comp.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            comp.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        else:  # the server does not report usage in streams (llama-cpp-python): one chunk is about one token
            comp.completion_tokens = n_chunks
            comp.extra["usage_estimated"] = True
        if finish not in ("stop", "length"):
            comp.extra["finish_reason_raw"] = finish
        return comp

    def _parse(self, text: str) -> Completion:
        # Parsed here rather than by the client so a 200 with a broken body is a retryable failure.
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise _Retryable("bad_response", f"response body is not JSON ({e.msg} at char {e.pos})") from None
        if not isinstance(data, dict):
            raise _Retryable("bad_response", "response body is not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _Retryable("bad_response", "response has no 'choices'")
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise _Retryable("bad_response", "response choice has no 'message'")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise _Retryable("bad_response", "response message content is not a string")
        usage = data.get("usage") or {}
        raw_reason = choice.get("finish_reason") or "stop"
        comp = Completion(
            text=content,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason="length" if raw_reason == "length" else "stop",
        )
        if raw_reason not in ("stop", "length"):
            comp.extra["finish_reason_raw"] = raw_reason
        return comp


_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="openai-policy-loop")


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a thread whose loop is running
    (e.g. Jupyter): then it runs on a fresh loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    return _POOL.submit(asyncio.run, coro).result()
