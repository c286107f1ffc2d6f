"""Rollout-verified error location: the first critical error found by experiment, not by opinion.

SCoRe defines the first critical error as the earliest step from which the trajectory no longer
leads to a correct solution. An LLM reviewer guesses that step; here we test it. Let
``ok(k)`` = "the teacher policy, continuing from the student's first ``k`` steps (replayed in the
sandbox, so the interpreter holds what they left), reaches the reference answer in at least one of
``samples_per_prefix`` rollouts". The first critical error is step ``k* - 1`` (0-based) for the
smallest ``k*`` with ``ok(k*)`` false.

Assumption (stated, not checked): ``ok`` is monotone, true up to some ``k*`` and false from there
on, i.e. a prefix the teacher cannot recover from does not become recoverable by appending more
student steps. Under it a binary search needs about ``log2(n + 1)`` prefix evaluations instead of
``n``. With few samples a flaky teacher can break monotonicity; more samples make ``ok`` sharper.

Outcomes: ``ok(0)`` false (the teacher fails even from scratch) -> hard to teach. For a finished
wrong trajectory ``ok(n)`` is false by definition and is not evaluated. For an unfinished one
``ok(n)`` is evaluated (with the step limit reached, the loop stops at once and it is false); if
the teacher finishes from the whole trajectory there is no critical error: a recorded failure.

All trajectories' searches advance in lock-step, so each round is one ``run_episodes`` call (one
batched generate per decoding round) over every trajectory's next prefix. Cost: the tokens the
teacher generated (and read) for its rollouts go into ``Verdict.usage``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from score_distill.models.base import Policy
from score_distill.teachers.base import StepProposal, Teacher, Verdict
from score_distill.trajectory import Task, Trajectory, Usage


@dataclass
class _Search:
    traj: Trajectory
    lo: int  # every k < lo is known ok
    hi: int  # hi is known (or, when == n + 1, assumed) not ok
    usage: Usage = field(default_factory=Usage)
    log: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.lo >= self.hi

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2


class RolloutLocator:
    """Teacher whose ``locate`` is the rollout binary search; ``solve``/``correct`` go to ``teacher``.

    ``teacher`` defaults to an :class:`~score_distill.teachers.llm.LLMTeacher` over the same policy.
    """

    def __init__(
        self,
        teacher_policy: Policy,
        samples_per_prefix: int = 2,
        *,
        sandbox_pool: Any = None,
        agent_config: Any = None,
        tools_for: Callable[[Task], dict] | None = None,
        scorer: Callable[[Task, str | None], float] | None = None,
        teacher: Teacher | None = None,
        name: str | None = None,
    ):
        if samples_per_prefix < 1:
            raise ValueError(f"samples_per_prefix must be >= 1, got {samples_per_prefix}")
        self.policy = teacher_policy
        self.samples_per_prefix = samples_per_prefix
        self.sandbox_pool = sandbox_pool
        self.agent_config = agent_config
        self.tools_for = tools_for
        self.scorer = scorer
        if teacher is None:
            from score_distill.teachers.llm import LLMTeacher

            teacher = LLMTeacher(teacher_policy, sandbox_pool, agent_config=agent_config, tools_for=tools_for,
                                 scorer=scorer)
        self.teacher = teacher
        self.name = name or f"rollout:{getattr(teacher_policy, 'name', 'teacher')}"
        self.usage = Usage()
        self.evaluations = 0  # prefixes evaluated (each = samples_per_prefix rollouts), over all calls

    def _pool(self) -> Any:
        if self.sandbox_pool is None:
            from score_distill.sandbox import SandboxConfig, SandboxPool

            self.sandbox_pool = SandboxPool(SandboxConfig())
        return self.sandbox_pool

    # ------------------------------------------------------------------ delegated
    def solve(self, tasks: list[Task]) -> list[Trajectory]:
        out = self.teacher.solve(tasks)
        for t in out:
            self.usage.add(t.teacher_usage)
        return out

    def correct(self, trajectories: list[Trajectory], verdicts: list[Verdict]) -> list[StepProposal]:
        out = self.teacher.correct(trajectories, verdicts)
        for p in out:
            self.usage.add(p.usage)
        return out

    # ------------------------------------------------------------------ locate
    def locate(self, trajectories: list[Trajectory]) -> list[Verdict]:
        from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes

        cfg = self.agent_config or AgentConfig()
        verdicts: list[Verdict | None] = [None] * len(trajectories)
        searches: dict[int, _Search] = {}
        for i, t in enumerate(trajectories):
            if t.correct:
                verdicts[i] = Verdict(is_correct=True)
            elif not t.steps:
                verdicts[i] = Verdict(is_correct=False, failure="trajectory has no steps")
            else:
                n = len(t.steps)
                searches[i] = _Search(t, 0, n if t.finished else n + 1)

        while any(not s.done for s in searches.values()):
            active = [i for i, s in searches.items() if not s.done]
            starts = []
            for i in active:
                s = searches[i]
                prefix = s.traj.steps[: s.mid]
                for r in range(self.samples_per_prefix):
                    starts.append(EpisodeStart(s.traj.task, prefix=prefix, id=f"{s.traj.id}:k{s.mid}:r{r}"))
            rollouts = run_episodes(self.policy, starts, self._pool(), cfg, tools_for=self.tools_for,
                                    scorer=self.scorer, origin="teacher", progress=None)
            self.evaluations += len(active)
            for j, i in enumerate(active):
                s = searches[i]
                k = s.mid
                group = rollouts[j * self.samples_per_prefix:(j + 1) * self.samples_per_prefix]
                wins = sum(r.correct for r in group)
                for r in group:
                    for st in r.steps[k:]:  # only what the teacher generated, not the replayed prefix
                        s.usage.add(Usage(calls=1, prompt_tokens=st.prompt_tokens,
                                          completion_tokens=st.completion_tokens, seconds=st.gen_seconds))
                s.log.append(f"k={k}: {wins}/{len(group)}")
                if wins:
                    s.lo = k + 1
                else:
                    s.hi = k

        for i, s in searches.items():
            self.usage.add(s.usage)
            n = len(s.traj.steps)
            evidence = "teacher rollouts reaching the answer from the first k student steps: " + ", ".join(s.log)
            k_star = s.lo
            if k_star == 0:
                verdicts[i] = Verdict(is_correct=False, analysis=evidence + " (fails from scratch)", usage=s.usage)
            elif k_star > n:
                verdicts[i] = Verdict(
                    is_correct=False, analysis=evidence, usage=s.usage,
                    failure="no critical error: the teacher reaches the answer from the whole trajectory")
            else:
                verdicts[i] = Verdict(is_correct=False, first_error_step=k_star - 1, usage=s.usage,
                                      analysis=evidence + f"; first critical error at step {k_star} (1-based)")
        return [v for v in verdicts if v is not None]
