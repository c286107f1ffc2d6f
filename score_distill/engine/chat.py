"""The chat template's glue as token ids, so an episode's context grows by appending ids only.

From the tokenizer's own chat template, rendered once on placeholder messages, it derives: the text
that closes an assistant turn (``<|im_end|>\\n`` for ChatML), the text around a user turn, and the
header that opens the next assistant turn. A turn's continuation is then
``close + user_head + observation + user_tail`` (the tail ends with the assistant header),
tokenized on its own and appended after the ids the model sampled, which are never re-tokenized.
When the model itself sampled the end-of-turn token, the close text does not repeat it.

A template that rewrites earlier turns (e.g. one that drops past reasoning) cannot be glued this way
and raises :class:`~score_distill.training.chat_tokenize.ChatTemplateError`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from score_distill.training.chat_tokenize import ChatTemplateError

_SYS, _USER, _ASSISTANT, _OBS = "\x00SYS\x00", "\x00USER\x00", "\x00ASSISTANT\x00", "\x00OBS\x00"


def token_space(tokenizer: Any) -> str:
    """A short fingerprint of the tokenizer and its chat template: ids recorded under one space are
    reused as ids only under the same space (else the step's text is tokenized)."""
    probe = "<thought>x = 12 * 7</thought>\n<code>\nprint(x)\n</code> Observation: 84 ünï"
    h = hashlib.sha256()
    for part in (type(tokenizer).__name__, str(len(tokenizer)), str(getattr(tokenizer, "chat_template", "")),
                 str(tokenizer(probe, add_special_tokens=False)["input_ids"]), str(tokenizer.eos_token)):
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\x01")
    return h.hexdigest()[:12]


class ChatGlue:
    def __init__(self, tokenizer: Any, eot_ids: list[int]):
        self.tokenizer = tokenizer
        self.space = token_space(tokenizer)
        render = tokenizer.apply_chat_template
        base = [{"role": "system", "content": _SYS}, {"role": "user", "content": _USER}]
        p = render(base, tokenize=False, add_generation_prompt=True)
        a = render(base + [{"role": "assistant", "content": _ASSISTANT}], tokenize=False)
        b = render(base + [{"role": "assistant", "content": _ASSISTANT}, {"role": "user", "content": _OBS}],
                   tokenize=False, add_generation_prompt=True)
        if not a.startswith(p + _ASSISTANT) or not b.startswith(a) or b.count(_OBS) != 1:
            raise ChatTemplateError("the chat template is not prefix-consistent across turns; the engine cannot "
                                    "append turns as ids")
        self.close = a[len(p) + len(_ASSISTANT):]
        self.user_head, self.user_tail = b[len(a):].split(_OBS)
        # The end-of-turn token's text, when the close text starts with it (skipped if the model sampled it).
        self.eot_text = {i: tokenizer.convert_ids_to_tokens(i) for i in eot_ids}

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Ids of the system + user turns and the first assistant header."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.encode(text)

    def after_turn(self, turn_ids: list[int], observation: str) -> list[int]:
        """Ids to append after an assistant turn's ids: its close, the observation turn, the next header."""
        close = self.close
        if turn_ids and turn_ids[-1] in self.eot_text and close.startswith(self.eot_text[turn_ids[-1]]):
            close = close[len(self.eot_text[turn_ids[-1]]):]
        return self.encode(close + self.user_head + observation + self.user_tail)
