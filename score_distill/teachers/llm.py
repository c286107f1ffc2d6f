"""The LLM teacher: any Policy (a 72B model behind vLLM, a hosted API) as solver, reviewer, step writer.

Every batch is one ``policy.generate`` call; only the requests whose reply was rejected are sent
again (with the rejected reply and the reason appended, so a deterministic model does not repeat
itself), at most ``max_retries`` times. A request that never yields a valid reply becomes a
recorded failure (``Verdict.failure`` / ``StepProposal.failure`` with the reason): no task is lost.
Replies are parsed strictly (pydantic, JSON schema) and checked against what we know: the step
index must exist, and the reviewer may not call a trajectory correct whose answer scored wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from score_distill.agent import format as fmt
from score_distill.models.base import Chat, Completion, Policy, SamplingParams
from score_distill.teachers import prompts
from score_distill.teachers.base import StepProposal, Verdict
from score_distill.teachers.guards import correction_phrase, leaks_answer
from score_distill.trajectory import Step, Task, Trajectory, Usage

# The judge runs greedy: the reference's temperature 0.9 made verdicts irreproducible (section 7),
# and a repetition penalty hurts JSON (keys and quotes repeat by design).
DEFAULT_JUDGE_PARAMS = SamplingParams(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=1024, seed=0)
DEFAULT_WRITE_PARAMS = SamplingParams(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=1024, seed=0)


class LocateReply(BaseModel):
    """The reviewer's JSON. Strict types ("3" is not a step number); unknown keys are ignored.

    The reference pipeline's key names (``correction_start_step``, ``correction_suggestion``) are
    accepted too, so its judge prompts can be reused.
    """

    model_config = ConfigDict(strict=True, extra="ignore")

    is_correct: bool
    error_analysis: str
    first_error_step: int = Field(validation_alias=AliasChoices("first_error_step", "correction_start_step"))
    suggestion: str = Field(validation_alias=AliasChoices("suggestion", "correction_suggestion"))


_FENCED = re.compile(r"\A\s*```(?:json)?\s*\n(.*?)\n?```\s*\Z", re.S)


def parse_locate_reply(text: str, n_steps: int) -> tuple[LocateReply | None, str | None]:
    """(reply, None) or (None, reason). The trajectory is known to be wrong (unfinished counts)."""
    m = _FENCED.match(text)  # a single ```json fence is the one wrapping strong models add
    body = m.group(1) if m else text.strip()
    if not body:
        return None, "empty reply"
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON ({e.msg} at char {e.pos})"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    try:
        reply = LocateReply.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "<object>"
        return None, f"wrong schema: field '{loc}': {err['msg']}"
    if reply.is_correct:
        return None, "is_correct=true, but the final answer is known to be wrong"
    if reply.first_error_step != -1 and not 1 <= reply.first_error_step <= n_steps:
        return None, f"step index {reply.first_error_step} out of range (1..{n_steps} or -1)"
    return reply, None


@dataclass
class _Attempt:
    """Outcome of validating one reply: a result, or a reason and what to tell the model."""

    result: Any = None
    reason: str | None = None
    instruction: str = ""


Validator = Callable[[int, Completion], _Attempt]


def usage_of(c: Completion, failed: bool = False) -> Usage:
    return Usage(calls=1, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                 seconds=c.seconds, failures=int(failed))


def generate_with_retries(
    policy: Policy, chats: list[Chat], params: SamplingParams, validate: Validator, max_retries: int
) -> list[tuple[Any, str | None, Usage]]:
    """Per chat: (result, failure reason or None, usage over all attempts).

    One batched generate per round; round r+1 holds only the chats rejected in round r, except those the
    server refused (``Completion.extra["permanent"]``), which are final at once.
    ``Usage.failures`` counts rejected attempts (transport errors and invalid replies alike).
    """
    out: list[list[Any]] = [[None, "not attempted", Usage()] for _ in chats]
    pending = {i: chats[i] for i in range(len(chats))}
    for _ in range(max_retries + 1):
        if not pending:
            break
        order = list(pending)
        comps = policy.generate([pending[i] for i in order], params.model_copy(update={"n": 1}))
        if len(comps) != len(order):
            raise RuntimeError(
                f"{getattr(policy, 'name', policy)} returned {len(comps)} completions for {len(order)} chats")
        nxt: dict[int, Chat] = {}
        for i, c in zip(order, comps):
            if c.error:
                att = _Attempt(reason=f"request failed: {c.error}")
                if c.extra.get("permanent"):  # the server refused it: the same request gets the same answer
                    out[i][2].add(usage_of(c, failed=True))
                    out[i][1] = att.reason
                    continue
            elif c.finish_reason == "length":
                att = _Attempt(reason="reply cut at the token limit",
                               instruction="Your reply was too long and got cut. Reply again, shorter.")
            else:
                att = validate(i, c)
            out[i][2].add(usage_of(c, failed=att.reason is not None))
            if att.reason is None:
                out[i][0], out[i][1] = att.result, None
                continue
            out[i][1] = att.reason
            # A transport failure is sent again unchanged; a bad reply is shown back with the reason.
            nxt[i] = pending[i] if c.error or not c.text else prompts.retry_chat(pending[i], c.text, att.instruction)
        pending = nxt
    return [(r, reason, u) for r, reason, u in out]


class _GuidedPolicy:
    """The teacher policy with the solving guidance appended to the agent's system prompt.

    The guidance is for the teacher only: stored trajectories keep the plain agent prompt, which is
    what the student is trained and evaluated with.
    """

    def __init__(self, inner: Policy, guidance: str):
        self.inner = inner
        self.name = getattr(inner, "name", "teacher")
        self.guidance = guidance

    def generate(self, chats: list[Chat], params: SamplingParams) -> list[Completion]:
        guided = []
        for chat in chats:
            if chat and chat[0].get("role") == "system":
                chat = [{"role": "system", "content": chat[0]["content"] + "\n" + self.guidance}, *chat[1:]]
            guided.append(chat)
        return self.inner.generate(guided, params)


class LLMTeacher:
    """The Teacher protocol over any Policy. See the module docstring; prompts in :mod:`.prompts`.

    ``sandbox_pool`` is needed by :meth:`solve` only (a ``SandboxPool`` is made on first use when
    None). ``tools_for``/``scorer`` default to the task suites' (see docs/contracts.md).
    """

    def __init__(
        self,
        policy: Policy,
        sandbox_pool: Any = None,
        solve_params: SamplingParams | None = None,
        judge_params: SamplingParams | None = None,
        max_retries: int = 2,
        agent_config: Any = None,
        *,
        write_params: SamplingParams | None = None,
        tools_for: Callable[[Task], dict] | None = None,
        scorer: Callable[[Task, str | None], float] | None = None,
        name: str | None = None,
    ):
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.policy = policy
        self.name = name or f"llm:{getattr(policy, 'name', 'teacher')}"
        self.sandbox_pool = sandbox_pool
        self.solve_params = solve_params
        self.judge_params = (judge_params or DEFAULT_JUDGE_PARAMS).model_copy(
            update={"json_schema": prompts.LOCATE_SCHEMA})
        self.write_params = write_params or DEFAULT_WRITE_PARAMS
        self.max_retries = max_retries
        self.agent_config = agent_config
        self.tools_for = tools_for
        self.scorer = scorer
        self.usage = Usage()

    # ------------------------------------------------------------------ solve
    def _pool(self) -> Any:
        if self.sandbox_pool is None:
            from score_distill.sandbox import SandboxConfig, SandboxPool

            self.sandbox_pool = SandboxPool(SandboxConfig())
        return self.sandbox_pool

    def solve(self, tasks: list[Task]) -> list[Trajectory]:
        from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes

        cfg = self.agent_config or AgentConfig()
        if self.solve_params is not None:
            cfg = cfg.model_copy(update={"sampling": self.solve_params})
        trajs = run_episodes(
            _GuidedPolicy(self.policy, prompts.SOLVE_GUIDANCE), [EpisodeStart(t) for t in tasks], self._pool(), cfg,
            tools_for=self.tools_for, scorer=self.scorer, origin="teacher", progress=None,
        )
        for t in trajs:
            u = Usage()
            for s in t.steps:
                s.origin = "teacher"
                u.add(Usage(calls=1, prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens,
                            seconds=s.gen_seconds))
            if t.meta.get("failure"):
                u.failures += 1
            t.teacher_usage = u
            self.usage.add(u)
        return trajs

    # ------------------------------------------------------------------ locate
    def locate(self, trajectories: list[Trajectory]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(trajectories)
        asked: list[int] = []
        for i, t in enumerate(trajectories):
            if t.correct:  # known from the scorer: no tokens spent on it
                verdicts[i] = Verdict(is_correct=True)
            elif not t.steps:
                verdicts[i] = Verdict(is_correct=False, failure="trajectory has no steps")
            else:
                asked.append(i)
        chats = [prompts.locate_chat(trajectories[i].task, trajectories[i].steps, trajectories[i].final_answer)
                 for i in asked]

        def validate(j: int, c: Completion) -> _Attempt:
            reply, reason = parse_locate_reply(c.text, len(trajectories[asked[j]].steps))
            if reason:
                return _Attempt(reason=reason, instruction=(
                    f"Your reply was rejected: {reason}. Reply with only the JSON object, "
                    "with the fields is_correct, error_analysis, first_error_step, suggestion."))
            return _Attempt(result=reply)

        for i, (reply, reason, usage) in zip(asked, generate_with_retries(
                self.policy, chats, self.judge_params, validate, self.max_retries)):
            self.usage.add(usage)
            if reason is not None:
                verdicts[i] = Verdict(is_correct=False, usage=usage, failure=reason)
                continue
            k = reply.first_error_step
            verdicts[i] = Verdict(is_correct=False, first_error_step=None if k == -1 else k - 1,
                                  analysis=reply.error_analysis, suggestion=reply.suggestion, usage=usage)
        return [v for v in verdicts if v is not None]

    # ------------------------------------------------------------------ correct
    def correct(self, trajectories: list[Trajectory], verdicts: list[Verdict]) -> list[StepProposal]:
        if len(trajectories) != len(verdicts):
            raise ValueError(f"{len(trajectories)} trajectories but {len(verdicts)} verdicts")
        proposals: list[StepProposal | None] = [None] * len(trajectories)
        asked: list[int] = []
        for i, (t, v) in enumerate(zip(trajectories, verdicts)):
            k = v.first_error_step
            if v.failure or v.is_correct or k is None:
                proposals[i] = StepProposal(None, failure="no located error to correct")
            elif not 0 <= k < len(t.steps):
                proposals[i] = StepProposal(None, failure=f"step index {k} out of range (0..{len(t.steps) - 1})")
            else:
                asked.append(i)
        chats = []
        for i in asked:
            t, v = trajectories[i], verdicts[i]
            k = v.first_error_step
            chats.append(prompts.write_step_chat(
                t.task, t.steps[:k], t.steps[k],
                prompts.scrub_answer(v.analysis, t.task.answer), prompts.scrub_answer(v.suggestion, t.task.answer)))

        def validate(j: int, c: Completion) -> _Attempt:
            t = trajectories[asked[j]]
            k = verdicts[asked[j]].first_error_step
            return check_written_step(c, t.task, t.steps[:k], is_first=k == 0)

        for i, (step, reason, usage) in zip(asked, generate_with_retries(
                self.policy, chats, self.write_params, validate, self.max_retries)):
            self.usage.add(usage)
            proposals[i] = StepProposal(step, usage=usage, failure=reason)
        return [p for p in proposals if p is not None]


_FATAL_FORMAT = ("no code block", "empty plan", "code in plan step (ignored)")


def check_written_step(c: Completion, task: Task, prefix: list[Step], *, is_first: bool) -> _Attempt:
    """Parse a written step (plan or action by position) and run the guards on it."""
    parsed = fmt.parse_step(c.text, is_first=is_first)
    fatal = [e for e in parsed.format_errors if e in _FATAL_FORMAT]
    if fatal or not parsed.thought or (not is_first and not parsed.code.strip()):
        what = ", ".join(fatal) or ("empty thought" if not parsed.thought else "empty code")
        return _Attempt(reason=f"bad format: {what}", instruction=prompts.RETRY_FORMAT)
    rendered = fmt.render_plan(parsed.thought) if is_first else fmt.render_action(parsed.thought, parsed.code)
    step = Step(
        kind=parsed.kind, thought=parsed.thought, code=parsed.code, origin="teacher",
        raw=None if rendered.strip() == c.text.strip() else c.text,
        prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, gen_seconds=c.seconds,
        format_errors=list(parsed.format_errors),
    )
    if leaks_answer(step, task.answer, [s.observation for s in prefix], task.question):
        return _Attempt(reason="leaks the reference answer", instruction=prompts.RETRY_LEAK)
    phrase = correction_phrase(step)
    if phrase:
        return _Attempt(reason=f"talks about correction ({phrase!r})", instruction=prompts.RETRY_CORRECTION)
    return _Attempt(result=step)
