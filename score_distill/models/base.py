"""The policy protocol every model backend implements: a batch of chats in, completions out.

Backends: :mod:`score_distill.models.hf` (transformers, local, CPU/GPU) and
:mod:`score_distill.models.openai_compat` (any OpenAI-compatible endpoint: vLLM, SGLang,
llama.cpp server, hosted APIs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

Chat = list[dict[str, str]]


class SamplingParams(BaseModel):
    """Sampling settings. Defaults are the paper's evaluation settings (docs/method.md section 4)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    repetition_penalty: float = 1.1
    max_new_tokens: int = 512
    stop: list[str] = []
    seed: int | None = None
    # JSON schema the answer must follow, where the backend supports constrained decoding.
    json_schema: dict[str, Any] | None = None
    n: int = 1  # completions per chat; results are flattened chat-major


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    seconds: float = 0.0
    error: str | None = None  # set when the backend gave up on this request (after retries)
    token_ids: list[int] | None = None  # generated ids, where the backend has them (local models)
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """Anything that continues chats. ``name`` identifies it in trajectories and reports."""

    name: str

    def generate(self, chats: list[Chat], params: SamplingParams) -> list[Completion]:
        """One completion per chat (``params.n`` per chat, chat-major), in input order.

        Never raises for a single bad request: a failed request comes back with ``error`` set
        and ``finish_reason="error"`` so a batch of hundreds is not lost to one timeout.
        """
        ...
