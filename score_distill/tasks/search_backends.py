"""Search backends behind the agent's ``web_search(query)`` tool.

* :class:`BM25Search` - local lexical search over a list of documents (bm25s), used by the
  built-in search suite and for a user's own corpus (:func:`load_corpus_jsonl`).
* :class:`HTTPSearch` - a generic JSON search API adapter (any service that answers a query with a
  JSON list of results), with a disk cache keyed by query and bounded retries.

Every backend is a callable ``backend(query) -> str``: the top results formatted as text, which
is what the model reads as its observation.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import httpx

from score_distill.utils.jsonl import DataError, append_jsonl, iter_json_lines


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class SearchResult:
    title: str
    snippet: str
    url: str = ""
    score: float = 0.0


class SearchError(RuntimeError):
    """The search service could not answer (after retries); the message says why."""


def format_results(results: Sequence[SearchResult], query: str) -> str:
    if not results:
        return f"No results for {query!r}."
    blocks = []
    for i, r in enumerate(results, 1):
        head = f"[{i}] {r.title}" + (f" ({r.url})" if r.url else "")
        blocks.append(f"{head}\n{r.snippet}")
    return "\n\n".join(blocks)


def _snippet(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", 0, max_chars)
    return text[: cut if cut > 0 else max_chars] + " ..."


class BM25Search:
    """BM25 over ``docs`` (title indexed twice so an entity's own page outranks mentions of it)."""

    def __init__(self, docs: Sequence[Doc], k: int = 3, snippet_chars: int = 600):
        if not docs:
            raise ValueError("BM25Search needs at least one document")
        self.docs = list(docs)
        self.k = k
        self.snippet_chars = snippet_chars
        corpus = [f"{d.title} {d.title} {d.text}" for d in self.docs]
        self._retriever = bm25s.BM25()
        self._retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)

    def search(self, query: str, k: int | None = None) -> list[SearchResult]:
        k = min(k or self.k, len(self.docs))
        tokens = bm25s.tokenize([str(query)], stopwords="en", show_progress=False)
        if not tokens.ids or not tokens.ids[0]:
            return []
        idx, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        out = []
        for i, s in zip(idx[0], scores[0]):
            if s <= 0:  # bm25s pads with zero-score documents when fewer match
                continue
            d = self.docs[int(i)]
            out.append(SearchResult(d.title, _snippet(d.text, self.snippet_chars), score=float(s)))
        return out

    def __call__(self, query: str) -> str:
        return format_results(self.search(query), str(query))


def load_corpus_jsonl(path: str | os.PathLike) -> list[Doc]:
    """A user corpus: one ``{"id", "title", "text"}`` object per line."""
    docs: list[Doc] = []
    for lineno, obj in iter_json_lines(path):
        for field in ("id", "title", "text"):
            if field not in obj:
                raise DataError(path, lineno, f"missing field '{field}'")
        if not isinstance(obj["title"], str) or not isinstance(obj["text"], str):
            raise DataError(path, lineno, "fields 'title' and 'text' must be strings")
        docs.append(Doc(str(obj["id"]), obj["title"], obj["text"]))
    if not docs:
        raise DataError(path, None, "corpus is empty")
    return docs


def _get_path(obj: Any, path: str) -> Any:
    """Follow a dotted path ("data.items" or "results.0.title") into decoded JSON; None if absent."""
    if not path:
        return obj
    for part in path.split("."):
        if isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return None
    return obj


class HTTPSearch:
    """Adapter for a JSON search API.

    ``results_path`` locates the list of hits in the response; ``title_field``, ``snippet_field``
    and ``url_field`` are paths inside one hit. The API key (if any) is read from the environment
    variable ``api_key_env`` and sent as ``Authorization: Bearer`` (or in ``api_key_header``).
    Answers are cached on disk (JSONL) so re-running an experiment costs no API calls; network
    errors, 429 and 5xx are retried ``retries`` times with exponential backoff, then SearchError.
    """

    def __init__(
        self,
        url: str,
        api_key_env: str | None = None,
        *,
        method: str = "GET",
        query_param: str = "q",
        count_param: str | None = "count",
        k: int = 5,
        results_path: str = "results",
        title_field: str = "title",
        snippet_field: str = "snippet",
        url_field: str = "url",
        api_key_header: str = "Authorization",
        extra_params: dict[str, Any] | None = None,
        cache_path: str | os.PathLike | None = None,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 15.0,
        snippet_chars: int = 600,
    ):
        if method.upper() not in ("GET", "POST"):
            raise ValueError(f"method must be GET or POST, not {method!r}")
        self.url, self.method, self.k = url, method.upper(), k
        self.query_param, self.count_param = query_param, count_param
        self.results_path, self.title_field, self.snippet_field, self.url_field = (
            results_path, title_field, snippet_field, url_field)
        self.extra_params = dict(extra_params or {})
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.snippet_chars = snippet_chars
        self.headers: dict[str, str] = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise SearchError(f"environment variable {api_key_env} (search API key) is not set")
            self.headers[api_key_header] = f"Bearer {key}" if api_key_header == "Authorization" else key
        self.cache_path = Path(cache_path) if cache_path else None
        self._cache: dict[str, list[dict]] = {}
        if self.cache_path and self.cache_path.exists():
            for lineno, obj in iter_json_lines(self.cache_path):
                if "key" not in obj or not isinstance(obj.get("results"), list):
                    raise DataError(self.cache_path, lineno, "cache record needs 'key' and a 'results' list")
                self._cache[obj["key"]] = obj["results"]
        self.calls = 0  # requests actually sent (cache hits excluded)

    def _key(self, query: str) -> str:
        blob = json.dumps([self.url, self.method, query, self.k, self.extra_params], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _request(self, query: str) -> Any:
        params = {self.query_param: query, **self.extra_params}
        if self.count_param:
            params[self.count_param] = self.k
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                self.calls += 1
                if self.method == "GET":
                    r = httpx.get(self.url, params=params, headers=self.headers, timeout=self.timeout_s)
                else:
                    r = httpx.post(self.url, json=params, headers=self.headers, timeout=self.timeout_s)
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}"
                continue
            if r.status_code >= 400:  # a client error will not fix itself: no retry
                raise SearchError(f"search API {self.url} answered HTTP {r.status_code}: {r.text[:200]}")
            try:
                return r.json()
            except ValueError:
                last = "response is not JSON"
                continue
        raise SearchError(f"search API {self.url} failed after {self.retries + 1} attempts: {last}")

    def search(self, query: str) -> list[SearchResult]:
        query = str(query)
        key = self._key(query)
        hits = self._cache.get(key)
        if hits is None:
            data = self._request(query)
            raw = _get_path(data, self.results_path)
            if not isinstance(raw, list):
                raise SearchError(f"search API response has no list at '{self.results_path}'")
            hits = []
            for h in raw[: self.k]:
                hits.append({
                    "title": str(_get_path(h, self.title_field) or ""),
                    "snippet": str(_get_path(h, self.snippet_field) or ""),
                    "url": str(_get_path(h, self.url_field) or ""),
                })
            self._cache[key] = hits
            if self.cache_path:
                append_jsonl(self.cache_path, [{"key": key, "query": query, "results": hits}])
        return [SearchResult(h["title"], _snippet(h["snippet"], self.snippet_chars), h["url"]) for h in hits]

    def __call__(self, query: str) -> str:
        return format_results(self.search(query), str(query))
