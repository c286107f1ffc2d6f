"""A tiny random Llama + ChatML BPE tokenizer for the tokenization and SFT tests.

Uses ``score_distill.models.tiny.build_tiny_model`` when it exists; otherwise builds an equivalent
one here (in-process, no downloads). Other test files import :func:`tiny_model_dir` from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "You are an expert assistant who solves tasks by writing Python code. Work step by step.",
    "<first_thought>Add the two numbers, then submit.</first_thought>",
    "<thought>compute the sum</thought>\n<code>\nx = 1 + 2\nprint(x)\n</code>",
    "<thought>submit</thought>\n<code>\nfinal_answer_print(x)\n</code>",
    "Observation: None",
    "Observation: 3\n",
    "What is 17 + 25? Question answer number value the of and to is in",
]


def _fallback(out_dir: Path, seed: int = 0) -> Path:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 10, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir


def tiny_model_dir(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    out = Path(out_dir)
    try:
        from score_distill.models.tiny import build_tiny_model
    except ImportError:
        return _fallback(out, seed)
    return Path(build_tiny_model(out, seed=seed))


def test_tiny_model_builds_and_has_chat_template(tmp_path):
    d = tiny_model_dir(tmp_path / "tiny")
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "assistant" in text
    assert model.config.vocab_size >= len(tok)
