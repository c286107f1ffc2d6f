"""TransformersPolicy on the tiny in-process model: batching, stops, sampling, seeds, in-place weights."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file

from score_distill.agent import format as fmt
from score_distill.models.base import Policy, SamplingParams
from score_distill.models.hf import TransformersPolicy, cut_at_stop, load_student
from score_distill.models.tiny import build_tiny_model

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=24, repetition_penalty=1.0)


def chat(q: str, system: bool = False) -> list[dict]:
    msgs = [{"role": "system", "content": fmt.system_prompt()}] if system else []
    return msgs + [{"role": "user", "content": q}]


# Prompts of quite different lengths, so left padding really happens inside a batch.
CHATS = [
    chat("hi"),
    chat("What is 12 * 7? Compute it with code."),
    chat("Alice has 5 apples and buys 3 more each week for 4 weeks. How many apples now?", system=True),
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture()
def policy(tiny_dir):
    return TransformersPolicy.from_pretrained(tiny_dir, batch_size=8)


def test_tiny_model_builds_and_generates(policy):
    assert isinstance(policy, Policy)
    assert policy.device.type == "cpu" and policy.model.dtype == torch.float32
    assert sum(p.numel() for p in policy.model.parameters()) < 500_000  # seconds-scale training
    out = policy.generate(CHATS, GREEDY)
    assert len(out) == 3
    prompt_lens = [len(ids) for ids in policy.encode_chats(CHATS)]
    assert len(set(prompt_lens)) == 3
    for c, plen in zip(out, prompt_lens):
        assert c.error is None and c.prompt_tokens == plen
        assert c.completion_tokens == len(c.token_ids) <= 24
        assert c.finish_reason in ("stop", "length")
        assert c.text == policy.tokenizer.decode(c.token_ids, skip_special_tokens=True)


def test_tokenizer_round_trips_and_formats_chatml(policy):
    tok = policy.tokenizer
    text = "<thought>ünïcode 日本 ✓</thought>\n<code>\nprint(12 * 7)\n</code>"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    rendered = tok.apply_chat_template(CHATS[0], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|pad|>"


def test_batched_left_padded_greedy_equals_one_by_one(policy):
    batch = policy.generate(CHATS, GREEDY)
    alone = [policy.generate([c], GREEDY)[0] for c in CHATS]
    assert [c.token_ids for c in batch] == [c.token_ids for c in alone]
    assert [c.text for c in batch] == [c.text for c in alone]
    assert len({tuple(c.token_ids) for c in batch}) > 1  # the model's output depends on the prompt


def test_batch_size_smaller_than_input_gives_same_result(tiny_dir, policy):
    small = TransformersPolicy(policy.model, policy.tokenizer, batch_size=1)
    assert [c.token_ids for c in small.generate(CHATS, GREEDY)] == [c.token_ids for c in policy.generate(CHATS, GREEDY)]


def test_stop_string_cuts_generation(policy):
    [free] = policy.generate([CHATS[1]], GREEDY)
    word = re.search(r"[A-Za-z]{3,}", free.text)
    assert word, f"expected a word in {free.text!r}"
    stop = word.group(0)
    expected = free.text[: free.text.find(stop)]
    [cut] = policy.generate([CHATS[1]], GREEDY.model_copy(update={"stop": ["never-there", stop]}))
    assert cut.text == expected and cut.finish_reason == "stop" and cut.extra["stop"] == stop
    # The ids end with the token that completed the stop string.
    assert cut.token_ids == free.token_ids[: len(cut.token_ids)]
    assert stop in policy.tokenizer.decode(cut.token_ids)
    assert stop not in policy.tokenizer.decode(cut.token_ids[:-1])


def test_cut_at_stop_keeps_closing_tags_only():
    text = "<thought>t</thought>\n<code>\nx = 1\n</code>\nObservation: 1"
    assert cut_at_stop(text, fmt.STOP_STRINGS) == ("<thought>t</thought>\n<code>\nx = 1\n</code>", "</code>")
    assert cut_at_stop("<code>\nx\n\nObservation: 3", fmt.STOP_STRINGS) == ("<code>\nx\n", "\nObservation:")
    assert cut_at_stop("no stop here", fmt.STOP_STRINGS) == ("no stop here", None)


def test_n_samples_are_chat_major_and_seeded(policy):
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=16, n=3, seed=7)
    out = policy.generate(CHATS[:2], params)
    assert len(out) == 6
    prompt_lens = [len(ids) for ids in policy.encode_chats(CHATS[:2])]
    assert [c.prompt_tokens for c in out] == [prompt_lens[0]] * 3 + [prompt_lens[1]] * 3
    assert len({tuple(c.token_ids) for c in out[:3]}) > 1  # samples differ
    again = policy.generate(CHATS[:2], params)
    assert [c.token_ids for c in again] == [c.token_ids for c in out]  # same seed, same samples
    other = policy.generate(CHATS[:2], params.model_copy(update={"seed": 8}))
    assert [c.token_ids for c in other] != [c.token_ids for c in out]


def test_seeded_generate_leaves_global_rng_alone(policy):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    policy.generate(CHATS[:1], SamplingParams(temperature=1.0, max_new_tokens=4, seed=5))
    assert torch.equal(torch.rand(3), expected)


def test_weights_updated_in_place_are_used_and_eos_ends_turn(tiny_dir):
    policy = TransformersPolicy.from_pretrained(tiny_dir)  # own copy: this test edits the weights
    model, tok = policy.model, policy.tokenizer
    model.train()
    eos = tok.eos_token_id
    letter = tok.convert_tokens_to_ids("a")
    with torch.no_grad():  # as a trainer would: edit the very same module in place
        model.lm_head.weight.zero_()
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.lm_head.out_features))
        model.lm_head.bias[eos] = 10.0
    out = policy.generate(CHATS, GREEDY)
    assert model.training  # the trainer's mode is restored
    assert all(c.token_ids == [eos] and c.text == "" and c.finish_reason == "stop" for c in out)
    assert all(c.completion_tokens == 1 for c in out)
    with torch.no_grad():
        model.lm_head.bias.zero_()
        model.lm_head.bias[letter] = 10.0
    [c] = policy.generate(CHATS[:1], GREEDY.model_copy(update={"max_new_tokens": 5}))
    assert c.text == "aaaaa" and c.finish_reason == "length" and c.token_ids == [letter] * 5


def test_load_student_tiny_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SCORE_DISTILL_CACHE", str(tmp_path / "cache"))
    model, tok = load_student("tiny")
    assert (tmp_path / "cache" / "tiny-seed0" / "config.json").is_file()
    assert tok.chat_template and model.config.model_type == "llama"
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_student(str(tmp_path / "missing"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no network here
    with pytest.raises(OSError, match="neither a built-in student"):
        load_student("no-such-org/no-such-model")


def test_tiny_build_is_deterministic_and_idempotent(tmp_path, tiny_dir):
    a = build_tiny_model(tmp_path / "a", seed=0)
    wa, w0 = load_file(a / "model.safetensors"), load_file(tiny_dir / "model.safetensors")
    assert wa.keys() == w0.keys() and all(torch.equal(wa[k], w0[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (tiny_dir / "tokenizer.json").read_text()
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tmp_path / "a", seed=0) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime  # reused, not rebuilt
    build_tiny_model(tmp_path / "a", seed=1)  # other arguments: rebuilt in place
    w1 = load_file(a / "model.safetensors")
    assert not torch.equal(w1["model.embed_tokens.weight"], w0["model.embed_tokens.weight"])
