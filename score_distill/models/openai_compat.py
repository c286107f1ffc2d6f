"""Policy backend for any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp server, hosted APIs).

Built on the official ``openai`` client (transport, auth, error classes) with its own retries
turned off: ours are bounded, exponential with jitter, honour ``Retry-After`` and also cover what
the client does not retry (a 200 whose body is not the expected JSON). One failed request never
raises: after the last attempt it comes back as ``Completion(error=..., finish_reason="error")``.

The API key is read from an environment variable only and is never stored in ``repr()``, logs or
error messages (messages are scrubbed of it in case a server echoes it back).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
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


class OpenAIPolicy:
    """``generate(chats, params)`` against ``{base_url}/chat/completions``; see the module docstring.

    ``max_concurrency`` bounds requests in flight within one ``generate`` call. ``params.n`` > 1 is
    sent as ``n`` separate requests (seeds ``seed + i``): many servers ignore ``n``.
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
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.name = name or f"openai:{model}"
        self.usage = Usage()
        self.schema_supported = True  # set False once the server rejects response_format json_schema
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"OpenAIPolicy(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
                f"max_concurrency={self.max_concurrency}, timeout_s={self.timeout_s}, max_retries={self.max_retries})")

    # -- key handling ---------------------------------------------------------------------
    def _api_key(self) -> str:
        return os.environ.get(self.api_key_env) or _NO_KEY_PLACEHOLDER

    def _scrub(self, message: str) -> str:
        key = os.environ.get(self.api_key_env)
        if key and key in message:
            message = message.replace(key, "***")
        return message

    def _client(self) -> openai.AsyncOpenAI:
        # One client per event loop: the underlying HTTP pool is bound to the loop that made it.
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key(), max_retries=0,
                                  timeout=self.timeout_s)

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
            page = await client.models.list()
            ids = [m.id for m in page.data]
        except openai.APIStatusError as e:
            return self._scrub(f"{self.base_url}/models answered HTTP {e.status_code}")
        except openai.APIError as e:
            return self._scrub(f"{self.base_url} unreachable: {type(e).__name__}: {e}")
        finally:
            await client.close()
        if ids and self.model not in ids:
            return f"model {self.model!r} not served by {self.base_url} (it serves: {', '.join(ids[:10])})"
        return None

    async def _generate_async(self, chats: list[Chat], params: SamplingParams) -> list[Completion]:
        client = self._client()
        sem = asyncio.Semaphore(self.max_concurrency)

        async def one(chat: Chat, i: int) -> Completion:
            async with sem:
                return await self._request(client, chat, params, i)

        try:
            jobs = [one(chat, i) for chat in chats for i in range(params.n)]
            return list(await asyncio.gather(*jobs))
        finally:
            await client.close()

    def _body(self, chat: Chat, params: SamplingParams, sample: int, with_schema: bool) -> dict[str, Any]:
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
        if with_schema and params.json_schema is not None:
            kw["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": "answer", "schema": params.json_schema, "strict": True}}
        return kw

    async def _request(self, client: openai.AsyncOpenAI, chat: Chat, params: SamplingParams,
                       sample: int) -> Completion:
        t0 = time.monotonic()
        attempt = 0
        schema_fallback_used = False
        last_cause, last_msg = "unknown", ""
        while True:
            with_schema = params.json_schema is not None and self.schema_supported
            try:
                comp = await self._attempt(client, self._body(chat, params, sample, with_schema))
            except _Permanent as e:
                if e.status == 400 and with_schema and not schema_fallback_used:
                    # The server cannot do constrained decoding: ask once more without it, and remember.
                    log.warning("%s rejected response_format json_schema (HTTP 400); sending without it", self.name)
                    with self._lock:
                        self.schema_supported = False
                    schema_fallback_used = True
                    continue
                return self._failed(e.cause, self._scrub(str(e)), t0)
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
            comp.seconds = time.monotonic() - t0
            comp.text = _closing_tag_fix(comp.text, params.stop) if comp.finish_reason == "stop" else comp.text
            comp.extra["attempts"] = attempt + 1
            with self._lock:
                self.usage.calls += 1
                self.usage.prompt_tokens += comp.prompt_tokens
                self.usage.completion_tokens += comp.completion_tokens
                self.usage.seconds += comp.seconds
            return comp

    def _failed(self, cause: str, message: str, t0: float) -> Completion:
        seconds = time.monotonic() - t0
        with self._lock:
            self.usage.calls += 1
            self.usage.seconds += seconds
            self.usage.failures[cause] += 1
        log.warning("%s: request failed: %s", self.name, message)
        return Completion(text="", finish_reason="error", error=f"{cause}: {message}", seconds=seconds)

    async def _attempt(self, client: openai.AsyncOpenAI, body: dict[str, Any]) -> Completion:
        try:
            raw = await client.chat.completions.with_raw_response.create(**body)
        except openai.APITimeoutError as e:
            raise _Retryable("timeout", f"timed out after {self.timeout_s}s") from e
        except openai.APIConnectionError as e:
            raise _Retryable("connection", f"connection error: {e.__cause__ or e}") from e
        except openai.APIStatusError as e:
            code = e.status_code
            resp_text = (e.response.text or "").strip()
            detail = f"HTTP {code}: {str(e)[:200]}" + (f" | body: {resp_text[:300]}" if resp_text and resp_text not in str(e) else "")
            if code == 429:
                raise _Retryable("rate_limit", detail, _parse_retry_after(e.response.headers)) from e
            if code >= 500 or code == 408:
                raise _Retryable("server_error", detail, _parse_retry_after(e.response.headers)) from e
            raise _Permanent(f"http_{code}", detail, status=code) from e
        return self._parse(raw.http_response.text)

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
