"""Model backends behind one :class:`~score_distill.models.base.Policy` protocol.

The protocol types import instantly; the backends (torch, transformers, openai) load on first use,
so modules that only need ``SamplingParams`` do not pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from score_distill.models.base import Chat, Completion, Policy, SamplingParams

if TYPE_CHECKING:
    from score_distill.models.hf import TransformersPolicy, load_student
    from score_distill.models.openai_compat import OpenAIPolicy
    from score_distill.models.smollm2 import ensure_smollm2_hf, smollm2_gguf_path
    from score_distill.models.tiny import build_tiny_model

_LAZY = {
    "TransformersPolicy": "score_distill.models.hf",
    "load_student": "score_distill.models.hf",
    "OpenAIPolicy": "score_distill.models.openai_compat",
    "ensure_smollm2_hf": "score_distill.models.smollm2",
    "smollm2_gguf_path": "score_distill.models.smollm2",
    "build_tiny_model": "score_distill.models.tiny",
}

__all__ = [
    "Chat", "Completion", "Policy", "SamplingParams",
    "TransformersPolicy", "load_student", "OpenAIPolicy", "ensure_smollm2_hf", "smollm2_gguf_path", "build_tiny_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'score_distill.models' has no attribute {name!r}")
