"""AnswerJudge: deterministic first, strict JSON, retry then failure, disk cache, batching."""

from __future__ import annotations

import json

from score_distill.models.base import Completion, Policy
from score_distill.tasks.judge import AnswerJudge, parse_reply
from score_distill.tasks.registry import make_tasks
from score_distill.trajectory import Task


class ScriptedPolicy:
    """A Policy whose replies come from a function of the prompt; records every batch."""

    name = "scripted-judge"

    def __init__(self, reply):
        self.reply = reply
        self.batches: list[int] = []

    def generate(self, chats, params):
        self.batches.append(len(chats))
        return [Completion(text=self.reply(c[-1]["content"]), prompt_tokens=10, completion_tokens=5) for c in chats]


def _task(i, gold="Paris"):
    return Task(id=f"t{i}", question=f"Capital number {i}?", answer=gold, meta={"kind": "deep"})


def test_deterministic_first_then_llm_and_cache(tmp_path):
    pol = ScriptedPolicy(lambda p: json.dumps({"equivalent": "Paris, France" in p, "reason": "same city"}))
    assert isinstance(pol, Policy)
    j = AnswerJudge(pol, tmp_path / "judge.jsonl")
    items = [(_task(0), "Paris"), (_task(1), "Paris, France"), (_task(2), "Lyon"), (_task(3), None),
             (make_tasks("math", 1, 2, seed=1)[0], "12")]
    res = j.judge(items)
    assert [r.equivalent for r in res] == [True, True, False, False, False]
    assert [r.source for r in res] == ["deterministic", "llm", "llm", "deterministic", "deterministic"]
    assert pol.batches == [2] and j.usage.calls == 2 and j.usage.prompt_tokens == 20
    j2 = AnswerJudge(ScriptedPolicy(lambda p: "unused"), tmp_path / "judge.jsonl")
    res2 = j2.judge(items[1:3])
    assert [r.source for r in res2] == ["cache", "cache"] and j2.usage.calls == 0


def test_strict_parsing_retry_then_failure():
    replies = iter(['Sure! {"equivalent": true, "reason": "x"}',  # prose around JSON: invalid
                    '```json\n{"equivalent": true, "reason": "ok"}\n```'])
    j = AnswerJudge(ScriptedPolicy(lambda p: next(replies)))
    (r,) = j.judge([(_task(0), "the city of Paris, France")])
    assert r.equivalent is True and r.source == "llm"
    always_bad = ['"true"', '{"equivalent": "true", "reason": "x"}', '{"equivalent": true}',
                  '{"equivalent": true, "reason": "x", "extra": 1}', "TRUE, they are equivalent"]
    for bad in always_bad:
        j = AnswerJudge(ScriptedPolicy(lambda p, bad=bad: bad), retries=1)
        (r,) = j.judge([(_task(0), "Parisss")])
        assert r.equivalent is None and r.source == "failure" and r.failure, bad
        assert j.usage.failures == 1 and j.usage.calls == 2
        assert not j.is_correct(_task(0), "Parisss")


def test_batching_and_parse_reply():
    pol = ScriptedPolicy(lambda p: '{"equivalent": false, "reason": "different"}')
    j = AnswerJudge(pol, batch_size=3)
    j.judge([(_task(i), f"Lyon {i}") for i in range(7)])
    assert pol.batches == [3, 3, 1]
    assert parse_reply('  {"equivalent": false, "reason": ""} ').equivalent is False
