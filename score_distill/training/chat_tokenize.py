"""Chat tokenization with assistant-only loss masks, for any chat template.

How the masks are found (template-agnostic): the conversation is rendered with the tokenizer's own
chat template once per turn boundary (``messages[:i]``, and ``messages[:i]`` + generation prompt
before each assistant turn). Every rendering must be a string prefix of the next; the differences are
the turn segments. Each segment is tokenized on its own and the concatenation is **asserted equal**
to tokenizing the whole conversation at once, so turn-by-turn and whole-conversation token ids are
the same by construction (the known pitfall: separators merged or lost at turn boundaries). A
template that violates either property raises :class:`ChatTemplateError` naming the turn.

An assistant segment is split into the part the model must write (its content up to and including
the end-of-turn token, e.g. ``<|im_end|>``, so the model learns to stop) and the template's trailing
separator (e.g. the ``\\n`` after ``<|im_end|>``), which is never trained: at generation time the
model stops at the end-of-turn token and the separator is never produced.

Why not ``return_assistant_tokens_mask``: it needs a ``{% generation %}`` block in the template,
which few released templates (SmolLM2, Qwen2.5, Llama 3) have, and it does not include the
end-of-turn token in the mask of most templates that do.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


class ChatTemplateError(ValueError):
    """The chat template cannot be tokenized turn by turn consistently."""


def _render(tokenizer: Any, messages: list[dict[str, str]], gen_prompt: bool) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)


def _encode(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    # The template already wrote BOS and every special token it wants.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _special_strings(tokenizer: Any) -> list[str]:
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values():
        if getattr(tok, "special", False):
            specials.add(str(tok))
    return sorted((s for s in specials if s), key=len, reverse=True)


def _split_end_of_turn(tokenizer: Any, segment: str, content: str) -> tuple[str, str]:
    """(trained part, trailing separator) of a rendered assistant segment.

    The trained part ends right after the first special token that follows the content (the
    end-of-turn token); with no special token there, it ends at the last non-space character.
    """
    start = len(content) if content and segment.startswith(content) else 0
    best = -1
    for sp in _special_strings(tokenizer):
        i = segment.find(sp, start)
        if i >= 0 and (best < 0 or i + len(sp) < best):
            best = i + len(sp)
    cut = best if best >= 0 else len(segment.rstrip())
    return segment[:cut], segment[cut:]


def _segments(tokenizer: Any, messages: list[dict[str, str]], train_from: int) -> list[tuple[str, bool, int]]:
    """Cut the full rendering into (text, trained, message_index) pieces at every turn boundary."""
    pieces: list[tuple[str, bool, int]] = []
    done = ""
    for i, msg in enumerate(messages):
        if msg.get("role") == "assistant":
            head = _render(tokenizer, messages[:i], gen_prompt=True) if i else ""
            if not head.startswith(done):
                raise ChatTemplateError(
                    f"turn {i}: the generation-prompt rendering of messages[:{i}] does not extend the rendering "
                    f"of the earlier turns; the template is not prefix-consistent"
                )
            if head != done:
                pieces.append((head[len(done):], False, i))
            done = head
        upto = _render(tokenizer, messages[: i + 1], gen_prompt=False)
        if not upto.startswith(done):
            raise ChatTemplateError(
                f"turn {i} ({msg.get('role')}): rendering messages[:{i + 1}] does not extend the rendering of the "
                f"earlier turns (the template rewrites earlier turns, e.g. drops reasoning); cannot mask turn by turn"
            )
        seg = upto[len(done):]
        if msg.get("role") == "assistant":
            trained, tail = _split_end_of_turn(tokenizer, seg, msg.get("content", ""))
            pieces.append((trained, i >= train_from and msg.get("train", True), i))
            if tail:
                pieces.append((tail, False, i))
        elif seg:
            pieces.append((seg, False, i))
        done = upto
    return pieces


def _tokenize(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int | None, train_from: int
) -> dict[str, Any]:
    if not messages:
        raise ValueError("empty conversation")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} needs 'role' and 'content': {m!r}")
    pieces = _segments(tokenizer, messages, train_from)
    ids: list[int] = []
    mask: list[int] = []
    for text, trained, _ in pieces:
        part = _encode(tokenizer, text)
        ids.extend(part)
        mask.extend([int(trained)] * len(part))
    whole = _encode(tokenizer, "".join(p[0] for p in pieces))
    if whole != ids:
        k = next((j for j, (a, b) in enumerate(zip(whole, ids)) if a != b), min(len(whole), len(ids)))
        pos, turn = 0, -1
        for text, _, mi in pieces:
            pos += len(_encode(tokenizer, text))
            if pos >= k:
                turn = mi
                break
        raise ChatTemplateError(
            f"turn-by-turn tokenization differs from tokenizing the whole conversation at token {k} "
            f"(near message {turn}): the tokenizer merges text across a turn boundary"
        )
    truncated = 0
    if max_length is not None and len(ids) > max_length:
        truncated = len(ids) - max_length
        ids, mask = ids[:max_length], mask[:max_length]
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": [1] * len(ids),
        "assistant_mask": mask,
        "truncated": truncated,
    }


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]], max_length: int | None = None) -> dict[str, Any]:
    """Token ids and labels for SFT: only assistant turns (with their end-of-turn token) are trained.

    Returns ``input_ids``, ``labels`` (-100 outside assistant turns), ``attention_mask``,
    ``assistant_mask`` (1 on trained tokens) and ``truncated`` (tokens cut from the end to fit
    ``max_length``; the start is kept). An assistant message with ``"train": False`` is context only.
    """
    return _tokenize(tokenizer, messages, max_length, train_from=0)


def tokenize_prompt_completion(
    tokenizer: Any,
    prompt: list[dict[str, str]],
    completion: list[dict[str, str]],
    max_length: int | None = None,
) -> dict[str, Any]:
    """Token ids for RL: ``prompt`` (system, task, verified prefix) then a multi-turn ``completion``.

    Only the completion's assistant turns are trained; the prompt (its assistant turns included)
    and the completion's observation turns get label -100. Besides the keys of
    :func:`tokenize_chat`, returns ``prompt_length``: the number of tokens up to and including the
    generation prompt of the first completion turn (where sampling starts).
    """
    if not completion or completion[0].get("role") != "assistant":
        raise ValueError("completion must start with an assistant turn")
    messages = list(prompt) + list(completion)
    out = _tokenize(tokenizer, messages, max_length, train_from=len(prompt))
    out["prompt_length"] = min(len(_encode(tokenizer, _render(tokenizer, list(prompt), gen_prompt=True))),
                               len(out["input_ids"]))
    return out


def trained_text(tokenizer: Any, encoded: dict[str, Any]) -> list[str]:
    """Decode each contiguous run of trained tokens (for checks and debugging)."""
    runs: list[list[int]] = []
    prev = False
    for t, m in zip(encoded["input_ids"], encoded["assistant_mask"]):
        if m and not prev:
            runs.append([])
        if m:
            runs[-1].append(t)
        prev = bool(m)
    return [tokenizer.decode(r, skip_special_tokens=False) for r in runs]
