"""Build the configured web_search backend (local BM25 corpus or an HTTP search API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_search(cfg: Any, cache_path: Path):
    """``cfg`` is a config.SearchConfig; returns a callable query -> text, or None for kind 'none'."""
    from score_distill.config import ConfigError

    if cfg.kind == "none":
        return None
    if cfg.kind == "corpus":
        from score_distill.tasks.search_backends import BM25Search, load_corpus_jsonl

        if not cfg.corpus:
            raise ConfigError("search.kind is 'corpus' but search.corpus (a JSONL file) is not set")
        return BM25Search(load_corpus_jsonl(cfg.corpus), k=cfg.k)
    from score_distill.tasks.search_backends import HTTPSearch

    if not cfg.url:
        raise ConfigError("search.kind is 'http' but search.url is not set")
    return HTTPSearch(cfg.url, cfg.api_key_env, method=cfg.method, query_param=cfg.query_param, k=cfg.k,
                      results_path=cfg.results_path, title_field=cfg.title_field, snippet_field=cfg.snippet_field,
                      cache_path=cache_path)
