"""Teacher cost for teachers that spend no tokens (the oracle).

To compare methods by teacher budget even when the teacher is the built-in oracle, we charge it
what an LLM teacher doing the same job would read and write, at the reference's one call per step:
solving step i reads the conversation so far and writes step i; locating reads the question and the
numbered student trajectory and writes a short JSON; correcting reads the prefix and writes a step.
Tokens are estimated at 4 characters per token (marked ``estimated`` in reports). A teacher that
reports real token counts (an LLM endpoint) is passed through unchanged.
"""

from __future__ import annotations

import json
import math

from score_distill.teachers.base import StepProposal, Teacher, Verdict
from score_distill.trajectory import Task, Trajectory, Usage, steps_to_messages

CHARS_PER_TOKEN = 4.0
LOCATE_ANSWER_TOKENS = 120  # a JSON verdict with a short analysis


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _messages_text(msgs: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in msgs)


class EstimatedCostTeacher:
    """Wraps a Teacher and fills in estimated token usage where it reports none."""

    def __init__(self, inner: Teacher):
        self.inner = inner
        self.name = getattr(inner, "name", "teacher")
        self.usage = Usage()
        self.estimated = True

    def solve(self, tasks: list[Task]) -> list[Trajectory]:
        trajs = self.inner.solve(tasks)
        for t in trajs:
            if t.teacher_usage.total_tokens == 0:
                u = Usage()
                for i, s in enumerate(t.steps):
                    ctx = steps_to_messages(t.task, t.steps[:i])
                    u.add(Usage(calls=1, prompt_tokens=estimate_tokens(_messages_text(ctx)),
                                completion_tokens=estimate_tokens(s.render())))
                t.teacher_usage = u
            self.usage.add(t.teacher_usage)
        return trajs

    def locate(self, trajectories: list[Trajectory]) -> list[Verdict]:
        verdicts = self.inner.locate(trajectories)
        for t, v in zip(trajectories, verdicts):
            if v.usage.total_tokens == 0:
                prompt = t.task.question + json.dumps([s.model_dump(include={"thought", "code", "observation"})
                                                      for s in t.steps])
                v.usage = Usage(calls=1, prompt_tokens=estimate_tokens(prompt) + 200,
                                completion_tokens=LOCATE_ANSWER_TOKENS)
            self.usage.add(v.usage)
        return verdicts

    def correct(self, trajectories: list[Trajectory], verdicts: list[Verdict]) -> list[StepProposal]:
        props = self.inner.correct(trajectories, verdicts)
        for t, v, p in zip(trajectories, verdicts, props):
            if p.usage.total_tokens == 0:
                k = v.first_error_step or 0
                ctx = _messages_text(steps_to_messages(t.task, t.steps[:k])) + v.analysis + v.suggestion
                out = p.step.render() if p.step is not None else ""
                p.usage = Usage(calls=1, prompt_tokens=estimate_tokens(ctx) + estimate_tokens(t.steps[k].render()),
                                completion_tokens=estimate_tokens(out))
            self.usage.add(p.usage)
        return props
