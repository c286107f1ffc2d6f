"""The one record every stage passes along: Task, Step, Correction, Trajectory.

Stages read and write these as JSON Lines (see :mod:`score_distill.utils.jsonl`); every record
carries ``schema_version`` so files written by an older release can be recognised. Unknown fields
are rejected (a typo in a hand-edited file is an error, not silently dropped data).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from score_distill.agent import format as fmt

SCHEMA_VERSION = 1

Origin = Literal["student", "teacher"]
Outcome = Literal["correct", "wrong", "unfinished", "error"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Task(_Model):
    """A question with a checkable answer.

    ``answer`` is a string (math) or a list of accepted strings (QA aliases). ``meta`` holds what a
    suite knows beyond that, e.g. ``horizon`` and ``solution`` (the ground-truth plan for the
    oracle teacher: a list of dicts, see :mod:`score_distill.tasks`).
    """

    id: str
    question: str
    answer: str | list[str]
    source: str = ""
    tools: list[str] = Field(default_factory=lambda: ["python", "final_answer_print"])
    meta: dict[str, Any] = Field(default_factory=dict)


class ToolCall(_Model):
    """A host-served tool call made from inside the sandbox (e.g. ``web_search``).

    Recorded so that a replay of the step can serve ``result`` instead of calling the tool again.
    """

    name: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    result: str = ""


class TurnTokens(_Model):
    """A turn exactly as the model's context held it (token in, token out).

    ``ids`` are the assistant turn's ids: the sampled ids for a generated turn (never re-tokenized),
    or the tokenized text for a turn given as text (a teacher's correction). ``after`` are the ids
    appended before the next turn: the turn's close, the observation turn and the next assistant
    header. The context of turn ``t`` is ``Trajectory.prompt_ids`` followed by ``ids + after`` of
    every earlier step. ``space`` fingerprints the tokenizer and chat template the ids belong to.
    ``logprobs`` (sampled turns, in memory only) are the model's log-probabilities of ``ids`` at
    sampling time, from its unprocessed logits.
    """

    space: str
    ids: list[int]
    sampled: bool = False
    after: list[int] = Field(default_factory=list)
    logprobs: list[float] | None = Field(None, exclude=True)


class Step(_Model):
    kind: Literal["plan", "action"] = "action"
    thought: str = ""
    code: str = ""
    observation: str = ""
    origin: Origin = "student"
    raw: str | None = None  # the model's text before parsing, when it differs from the rendering
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gen_seconds: float = 0.0
    exec_seconds: float = 0.0
    format_errors: list[str] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    final_answer: str | None = None  # set when the code called final_answer_print and it ran
    error: str | None = None  # execution failure kind, e.g. "timeout", "ZeroDivisionError"
    tokens: TurnTokens | None = None  # the turn's ids as in the model's context (engine rollouts)

    def render(self) -> str:
        """The assistant turn as the model should produce it."""
        if self.kind == "plan":
            return fmt.render_plan(self.thought)
        return fmt.render_action(self.thought, self.code)

    def turn_text(self) -> str:
        """The assistant turn as the model wrote it: the raw text of a student's turn, else the rendering."""
        return self.raw if self.raw is not None and self.origin == "student" else self.render()

    def render_observation(self) -> str:
        return fmt.render_observation(fmt.PLAN_OBSERVATION if self.kind == "plan" else self.observation)


class Usage(_Model):
    """Tokens and time one party (teacher, judge) spent; summed across calls."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    failures: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> Usage:
        for k in ("calls", "prompt_tokens", "completion_tokens", "seconds", "failures"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self


class Correction(_Model):
    """A key-step record: the teacher replaced the student's step ``step_index`` (0-based).

    ``prefix`` is the verified prefix ``steps[:step_index]`` at the time of the correction.
    ``valid`` turns False when a later correction cut this teacher step out of the trajectory.
    """

    step_index: int
    prefix: list[Step]
    chosen: Step
    rejected: Step
    analysis: str = ""
    suggestion: str = ""
    valid: bool = True
    teacher_usage: Usage = Field(default_factory=Usage)


class Trajectory(_Model):
    schema_version: int = SCHEMA_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    task: Task
    steps: list[Step] = Field(default_factory=list)
    final_answer: str | None = None
    outcome: Outcome = "unfinished"
    score: float = 0.0  # 1/0 for exact scorers, F1 for QA
    corrections: list[Correction] = Field(default_factory=list)
    hard_to_teach: bool = False
    policy: str = ""  # which model produced the student steps
    teacher_usage: Usage = Field(default_factory=Usage)
    meta: dict[str, Any] = Field(default_factory=dict)
    prompt_ids: list[int] | None = None  # the first turn's context (system, question, assistant header)

    @property
    def finished(self) -> bool:
        return self.final_answer is not None

    @property
    def correct(self) -> bool:
        return self.outcome == "correct"

    @property
    def format_error_count(self) -> int:
        return sum(len(s.format_errors) for s in self.steps)

    def valid_corrections(self) -> list[Correction]:
        return [c for c in self.corrections if c.valid]

    def to_messages(self, system: str | None = None, upto: int | None = None) -> list[dict[str, str]]:
        """Chat rendering: system, the task as user, each step as assistant, each observation as user.

        ``upto`` renders only ``steps[:upto]`` (a prefix), still ending with the last observation.
        """
        return steps_to_messages(self.task, self.steps[:upto] if upto is not None else self.steps, system)


def steps_to_messages(task: Task, steps: list[Step], system: str | None = None, *,
                      as_written: bool = False) -> list[dict[str, str]]:
    """``as_written``: assistant turns as the model wrote them (:meth:`Step.turn_text`), for continuing
    an episode from what the model saw; else the clean rendering (training data)."""
    msgs: list[dict[str, str]] = []
    if system is None:
        system = fmt.system_prompt(task.tools)
    if system:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": task.question})
    for s in steps:
        msgs.append({"role": "assistant", "content": s.turn_text() if as_written else s.render()})
        msgs.append({"role": "user", "content": s.render_observation()})
    return msgs


def truncate_after_final(steps: list[Step]) -> list[Step]:
    """Steps up to and including the first one that produced a final answer."""
    for i, s in enumerate(steps):
        if s.final_answer is not None:
            return steps[: i + 1]
    return steps
