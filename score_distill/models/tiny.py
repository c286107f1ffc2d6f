"""A tiny randomly initialised chat model, built in-process, for tests that must run in seconds on CPU.

The tokenizer is a byte-level BPE (any text round-trips) trained with the ``tokenizers`` library on
a small built-in corpus of agent-format text, so turns tokenize to a realistic number of tokens.
The model is a Llama-style causal LM (the SmolLM2 architecture, scaled down). Everything is saved
with ``save_pretrained`` so it loads like any HF model; the same arguments give the same bytes of
weights (seeded init under a forked RNG, deterministic BPE training).
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from score_distill.agent import format as fmt
from score_distill.models.smollm2 import build_dir_once

PAD, IM_START, IM_END = "<|pad|>", "<|im_start|>", "<|im_end|>"
BUILD_FORMAT = 2  # bump when the build changes, so cached folders are rebuilt

# ChatML, as SmolLM2/Qwen. The {% generation %} markers let trainers ask for an assistant-token mask.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _corpus() -> list[str]:
    """Agent-format text: system prompts, plans, thought/code actions, observations, chat markup."""
    rng = random.Random(1234)
    nouns = ["apples", "books", "tickets", "marbles", "coins", "students", "pages", "boxes", "cars", "trees"]
    names = ["Alice", "Bob", "Carla", "Deepak", "Emma", "Farid", "Grace", "Hiro"]
    texts = [fmt.system_prompt(), fmt.system_prompt(("python", "web_search", "final_answer_print"))]
    for _ in range(150):
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        n, who = rng.choice(nouns), rng.choice(names)
        q = f"{who} has {a} {n} and buys {b} more each week for {b % 7 + 1} weeks. How many {n} now?"
        code = f"total = {a} + {b} * {b % 7 + 1}\nprint(total)"
        texts += [
            f"{IM_START}user\n{q}{IM_END}\n{IM_START}assistant\n"
            + fmt.render_plan(f"Compute the weekly total for {who}, then add the initial {n}.") + IM_END,
            fmt.render_action(f"I multiply {b} by the number of weeks and add {a}.", code),
            fmt.render_observation(str(a + b * (b % 7 + 1))),
            fmt.render_action("The result is known, so I submit it.", f"final_answer_print({a + b * (b % 7 + 1)})"),
            fmt.render_action(f"I search for facts about {n}.",
                              f'results = web_search("{who} {n} history")\nprint(results)'),
            f"for i in range({b}):\n    if i % {b % 5 + 2} == 0:\n        print(i, i ** 2)",
        ]
    return texts


def _train_tokenizer(vocab_size: int):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=PAD,
                                   additional_special_tokens=[IM_START])
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | os.PathLike,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    vocab_size: int = 512,
    max_positions: int = 4096,
) -> Path:
    """Build (once) a tiny random chat model + tokenizer into ``out_dir``; returns ``out_dir``.

    Calling again with the same arguments reuses the folder; other arguments rebuild it.
    """
    corpus_hash = hashlib.sha256("\n".join(_corpus()).encode()).hexdigest()[:16]
    manifest = {"kind": "tiny-llama", "format": BUILD_FORMAT, "seed": seed, "hidden": hidden, "layers": layers,
                "heads": heads, "kv_heads": kv_heads, "intermediate": intermediate, "vocab_size": vocab_size,
                "max_positions": max_positions, "corpus": corpus_hash, "transformers": transformers.__version__}

    def build(tmp: Path) -> None:
        tokenizer = _train_tokenizer(vocab_size)
        eos_id = tokenizer.convert_tokens_to_ids(IM_END)
        pad_id = tokenizer.convert_tokens_to_ids(PAD)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=intermediate or 2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,  # tied random embeddings just echo the last token
            bos_token_id=None,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=None)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return build_dir_once(Path(out_dir), build, manifest)
