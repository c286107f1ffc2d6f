"""A deterministic Policy for tests: answers from a script instead of a model.

``script(chat) -> str`` decides each completion from the conversation so far (e.g. the number of
assistant turns), so agent-loop, MPS and RL logic can be tested exactly, without sampling noise.
"""

from __future__ import annotations

from collections.abc import Callable

from score_distill.models.base import Chat, Completion, SamplingParams


def assistant_turns(chat: Chat) -> int:
    return sum(1 for m in chat if m["role"] == "assistant")


def question_of(chat: Chat) -> str:
    return next(m["content"] for m in chat if m["role"] == "user")


class ScriptedPolicy:
    def __init__(self, script: Callable[[Chat], str], name: str = "scripted"):
        self.script = script
        self.name = name
        self.calls = 0
        self.batches: list[int] = []

    def generate(self, chats: list[Chat], params: SamplingParams) -> list[Completion]:
        self.calls += 1
        self.batches.append(len(chats))
        out = []
        for chat in chats:
            for _ in range(params.n):
                text = self.script(chat)
                out.append(Completion(text=text, prompt_tokens=sum(len(m["content"]) for m in chat) // 4,
                                      completion_tokens=max(1, len(text) // 4)))
        return out
