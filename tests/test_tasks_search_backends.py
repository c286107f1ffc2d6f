"""BM25 over a corpus, the corpus loader, and HTTPSearch against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from score_distill.tasks.search_backends import BM25Search, Doc, HTTPSearch, SearchError, load_corpus_jsonl
from score_distill.utils.jsonl import DataError


def test_bm25_ranks_the_right_page_first():
    docs = [Doc("1", "Zorvex Labs", "Zorvex Labs was founded by Aldo Prennick."),
            Doc("2", "Zorvax Labs", "Zorvax Labs was founded by Mira Tollen."),
            Doc("3", "Kelmora", "Kelmora is a city on the Vesh River.")]
    s = BM25Search(docs, k=2)
    res = s.search("Zorvex Labs")
    assert res[0].title == "Zorvex Labs" and len(res) == 2
    text = s("who founded Zorvex Labs")
    assert text.startswith("[1] Zorvex Labs\nZorvex Labs was founded by Aldo Prennick.")
    assert s("qwertyuiop") == "No results for 'qwertyuiop'."


def test_corpus_loader_errors(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": 1, "title": "A", "text": "alpha"}\n{"id": 2, "title": "B"}\n')
    with pytest.raises(DataError, match=r"c.jsonl:2: missing field 'text'"):
        load_corpus_jsonl(p)
    p.write_text('{"id": 1, "title": "A", "text": "alpha beta"}\n{"id": 2, "title": "B", "text": "gamma"}\n')
    docs = load_corpus_jsonl(p)
    assert [d.id for d in docs] == ["1", "2"]
    assert BM25Search(docs).search("gamma")[0].title == "B"


class _Handler(BaseHTTPRequestHandler):
    fail_first = 0
    requests: list = []

    def log_message(self, *a):  # keep test output quiet
        pass

    def _answer(self, query: str, count: int):
        cls = type(self)
        cls.requests.append((self.command, query, self.headers.get("Authorization")))
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        if query == "forbidden":
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b"no")
            return
        body = {"data": {"hits": [{"name": f"{query} page {i}", "body": {"text": f"about {query} #{i}"},
                                   "link": f"http://x/{i}"} for i in range(count)]}}
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        qs = parse_qs(urlparse(self.path).query)
        self._answer(qs["query"][0], int(qs["n"][0]))

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(body["query"], int(body["n"]))


@pytest.fixture()
def server():
    _Handler.fail_first = 0
    _Handler.requests = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/search"
    srv.shutdown()
    srv.server_close()


def _client(url, tmp_path, **kw):
    return HTTPSearch(url, query_param="query", count_param="n", k=2, results_path="data.hits",
                      title_field="name", snippet_field="body.text", url_field="link",
                      cache_path=tmp_path / "cache.jsonl", backoff_s=0.01, **kw)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_http_search_fields_cache_and_key(server, tmp_path, monkeypatch, method):
    monkeypatch.setenv("TEST_SEARCH_KEY", "s3cret")
    s = _client(server, tmp_path, method=method, api_key_env="TEST_SEARCH_KEY")
    res = s.search("kelmora")
    assert [r.title for r in res] == ["kelmora page 0", "kelmora page 1"]
    assert res[0].snippet == "about kelmora #0" and res[0].url == "http://x/0"
    assert "[2] kelmora page 1 (http://x/1)" in s("kelmora")
    assert len(_Handler.requests) == 1 and _Handler.requests[0] == (method, "kelmora", "Bearer s3cret")
    # A new client reads the disk cache: no request at all.
    s2 = _client(server, tmp_path, method=method, api_key_env="TEST_SEARCH_KEY")
    assert s2.search("kelmora") == res and s2.calls == 0 and len(_Handler.requests) == 1


def test_http_search_retries_then_fails(server, tmp_path):
    _Handler.fail_first = 2
    s = _client(server, tmp_path, retries=2)
    assert s.search("river")[0].title == "river page 0"
    assert len(_Handler.requests) == 3
    _Handler.fail_first = 10
    with pytest.raises(SearchError, match="failed after 3 attempts: HTTP 503"):
        s.search("lake")
    _Handler.fail_first = 0
    n = len(_Handler.requests)
    with pytest.raises(SearchError, match="HTTP 403"):
        s.search("forbidden")
    assert len(_Handler.requests) == n + 1  # a client error is not retried


def test_http_search_missing_key_and_bad_paths(server, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(SearchError, match="NO_SUCH_KEY_VAR"):
        HTTPSearch(server, api_key_env="NO_SUCH_KEY_VAR")
    s = HTTPSearch(server, query_param="query", count_param="n", results_path="nope", retries=0)
    with pytest.raises(SearchError, match="no list at 'nope'"):
        s.search("x")
    with pytest.raises(SearchError, match="ConnectError|failed"):
        HTTPSearch("http://127.0.0.1:9/x", retries=0, timeout_s=2).search("x")
