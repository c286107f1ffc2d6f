"""One MPS chunk, every task at its own pace: the student's attempt, the teacher's review and correction, the
student's continuation, and again, up to ``max_corrections`` times (the rule: :mod:`score_distill.stages.mps`).

A task goes back to the teacher as soon as its own episode ends, and its continuation joins the episodes still
decoding: the chunk is one :func:`run_episodes` call fed by :class:`Mentor`, not a round of attempts, then a round
of reviews, then a round of continuations each waiting for its slowest episode. The engine keeps its rows full,
and the teacher's calls (an LLM behind HTTP) run on a thread of their own while the student decodes.

Each episode's sampling seed depends on its task and correction round only, never on timing; which episodes share
a forward does depend on timing, which changes logits by float rounding at most.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from score_distill.agent.loop import AgentConfig, EpisodeStart, Scorer, ToolsFor, run_episodes
from score_distill.models.base import Policy
from score_distill.stages.mps_status import Failure, MPSStatus
from score_distill.teachers.base import Teacher
from score_distill.teachers.guards import check_teacher_step
from score_distill.trajectory import Correction, Task, Trajectory, Usage
from score_distill.utils.progress import progress_bar
from score_distill.utils.seeds import derive_seed


@dataclass
class _Work:
    task: Task
    traj: Trajectory | None = None
    status: str | None = None
    failure: str | None = None
    reviews: int = 0  # the teacher's reviews so far (locate calls): the correction round
    pending: Correction | None = None  # the correction whose continuation is running


def _status_meta(w: _Work) -> Trajectory:
    t = w.traj
    t.meta["mps_status"] = w.status
    t.meta["n_corrections"] = len(t.corrections)
    if w.failure:
        t.meta["failure"] = w.failure
        t.meta["failure_record"] = Failure.parse(w.failure).to_dict()
    t.hard_to_teach = w.status == MPSStatus.HARD_TO_TEACH
    return t


def _review(teacher: Teacher, trajs: list[Trajectory]) -> tuple[list[Any], list[int], list[Any]]:
    """The teacher's part, on the worker thread: locate the first error of each, correct those it located."""
    verdicts = teacher.locate(trajs)
    fix = [i for i, (t, v) in enumerate(zip(trajs, verdicts))
           if not v.failure and not v.is_correct and v.first_error_step is not None
           and 0 <= v.first_error_step < len(t.steps)]
    proposals = teacher.correct([trajs[i] for i in fix], [verdicts[i] for i in fix]) if fix else []
    return verdicts, fix, proposals


class Mentor:
    """The chunk's episodes (:class:`~score_distill.agent.loop.EpisodeFeed`): ``ended`` takes each episode as it
    ends; ``poll`` hands the continuations the teacher's corrections start."""

    def __init__(self, teacher: Teacher, tasks: list[Task], agent: AgentConfig, max_corrections: int, bar: Any):
        self.teacher, self.agent, self.max_corrections, self.bar = teacher, agent, max_corrections, bar
        self.work = {f"mps-{t.id}": _Work(t) for t in tasks}
        self.waiting: list[_Work] = []  # ended wrong, not yet sent to the teacher
        self.in_review: tuple[list[_Work], Future] | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mps-teacher")

    def starts(self) -> list[EpisodeStart]:
        return [EpisodeStart(w.task, id=i) for i, w in self.work.items()]

    def _final(self, w: _Work, status: str, failure: str | None = None) -> None:
        w.status, w.failure = status, failure if failure is not None else w.failure
        self.bar.advance()

    def ended(self, t: Trajectory) -> None:
        w = self.work[t.id]
        if w.pending is None:  # the student's own attempt
            w.traj = t
        else:
            corr = w.pending
            corr.chosen = t.steps[corr.step_index].model_copy(deep=True)  # now with its observation
            t.corrections = w.traj.corrections + [corr]
            t.teacher_usage = w.traj.teacher_usage
            t.meta = {**w.traj.meta, **t.meta}
            w.traj, w.pending = t, None
        if t.correct:
            self._final(w, MPSStatus.CORRECTED if t.corrections else MPSStatus.SOLVED_ALONE)
        elif w.reviews >= self.max_corrections:
            self._final(w, MPSStatus.EXHAUSTED)
        else:
            self.waiting.append(w)

    def poll(self, block: bool) -> list[EpisodeStart] | None:
        while True:
            if self.in_review is not None and (block or self.in_review[1].done()):
                works, fut = self.in_review
                self.in_review = None
                new = self._corrected(works, *fut.result())
                if new:
                    return new
                continue  # nothing to continue from that review: the next one, if any
            if self.in_review is None and self.waiting:
                works, self.waiting = self.waiting, []
                for w in works:
                    w.reviews += 1
                self.in_review = (works, self.pool.submit(_review, self.teacher, [w.traj for w in works]))
                continue
            if not block:
                return []
            if self.in_review is None:
                return None  # nothing live, nothing waiting, nothing in review: the chunk is done

    def _corrected(self, works: list[_Work], verdicts: list[Any], fix: list[int],
                   proposals: list[Any]) -> list[EpisodeStart]:
        """Apply a review (on the driving thread): the continuations to run, every other task settled."""
        proposal = dict(zip(fix, proposals))
        starts = []
        for i, (w, v) in enumerate(zip(works, verdicts)):
            w.traj.teacher_usage.add(v.usage)
            k = v.first_error_step
            if v.failure:
                self._final(w, MPSStatus.FAILED, f"locate: {v.failure}")
                continue
            if v.is_correct or k is None:
                self._final(w, MPSStatus.HARD_TO_TEACH, "teacher judged a wrong trajectory correct" if v.is_correct
                            else None)
                continue
            if i not in proposal:
                self._final(w, MPSStatus.FAILED, f"locate: step index {k} out of range 0..{len(w.traj.steps) - 1}")
                continue
            p = proposal[i]
            w.traj.teacher_usage.add(p.usage)
            if p.failure or p.step is None:
                self._final(w, MPSStatus.FAILED, f"correct: {p.failure or 'no step'}")
                continue
            steps = w.traj.steps
            # Every teacher's step passes the leak and correction-talk guards (the oracle's too); a step
            # that fails them is recorded with the task and never executed, trained on or made an RL target.
            violation = check_teacher_step(p.step, w.traj.task, steps[:k])
            if violation is not None:
                violation.step_index, violation.teacher = k, getattr(self.teacher, "name", "")
                w.traj.meta["guard_violation"] = violation.model_dump(mode="json")
                self._final(w, MPSStatus.FAILED, violation.reason())
                continue
            chosen = p.step.model_copy(update={"origin": "teacher", "observation": "", "final_answer": None})
            for c in w.traj.corrections:
                if c.step_index >= k:
                    c.valid = False  # its teacher step is cut away by this correction
            w.pending = Correction(
                step_index=k,
                prefix=[s.model_copy(deep=True) for s in steps[:k]],
                chosen=chosen,
                rejected=steps[k].model_copy(deep=True),
                analysis=v.analysis,
                suggestion=v.suggestion,
                teacher_usage=Usage().add(v.usage).add(p.usage),
            )
            # Continues from the student's own ids (Step.tokens) on the engine; a seed of its own per round.
            seed = None if self.agent.sampling.seed is None else derive_seed(self.agent.sampling.seed, w.traj.id,
                                                                             w.reviews)
            starts.append(EpisodeStart(w.task, prefix=steps[:k] + [chosen], execute_last=True, id=w.traj.id,
                                       seed=seed))
        return starts

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def mentor_chunk(
    student: Policy,
    teacher: Teacher,
    tasks: list[Task],
    pool: Any,
    agent: AgentConfig,
    *,
    max_corrections: int,
    tools_for: ToolsFor | None = None,
    scorer: Scorer | None = None,
    bar: Any = None,
) -> list[Trajectory]:
    """Run MPS on a batch of tasks; returns one final trajectory per task, in order. ``bar``: advanced as each
    task is settled (its own bar when None)."""
    with nullcontext(bar) if bar is not None else progress_bar(len(tasks), "MPS: tasks") as settled:
        mentor = Mentor(teacher, tasks, agent, max_corrections, settled)
        try:
            run_episodes(student, mentor.starts(), pool, agent, tools_for=tools_for, scorer=scorer, progress=None,
                         on_done=mentor.ended, feed=mentor)
        finally:
            mentor.close()
    return [_status_meta(w) for w in mentor.work.values()]
