"""Stage 1: cold-start behaviour cloning (BC init), and the behaviour-cloning baseline.

The teacher solves tasks as full trajectories (resumable: one record per task, appended in chunks);
every solve passes the teacher guards (:func:`~score_distill.teachers.guards.check_teacher_solve`: correction
talk on any step, the reference answer written before it was found); rejection sampling keeps the correct ones
that passed; the student is fine-tuned on them. A solve that fails a guard keeps its record, with
``meta["guard_violation"]``, and is counted, never trained on. The baseline is the same recipe on all training
tasks (Agent Distillation), for comparison at a larger teacher budget.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from score_distill.teachers.base import Teacher
from score_distill.teachers.guards import check_teacher_solve
from score_distill.trajectory import Task, Trajectory, Usage
from score_distill.utils.jsonl import append_jsonl, read_jsonl


def solve_resumable(teacher: Teacher, tasks: list[Task], out_path: Path, chunk_size: int = 32) -> list[Trajectory]:
    """Teacher trajectories for ``tasks``, reusing those already in ``out_path``."""
    done: dict[str, Trajectory] = {}
    if out_path.exists():
        for t in read_jsonl(out_path, Trajectory):
            done.setdefault(t.task.id, t)
    name = getattr(teacher, "name", "")
    guard_solves(done.values(), name)  # records written before the guard existed are checked on reading
    todo = [t for t in tasks if t.id not in done]
    for i in range(0, len(todo), chunk_size):
        chunk = todo[i : i + chunk_size]
        trajs = teacher.solve(chunk)
        for t in trajs:
            t.meta["role"] = "teacher"
        guard_solves(trajs, name)
        append_jsonl(out_path, trajs)
        for t in trajs:
            done[t.task.id] = t
    return [done[t.id] for t in tasks if t.id in done]


def guard_solves(trajs: Any, teacher: str = "") -> None:
    """Run the teacher guards on each solve, in place: ``meta["guard_violation"]`` is the first violation
    (a :class:`~score_distill.teachers.guards.GuardViolation` as JSON), absent when the solve passed."""
    for t in trajs:
        v = check_teacher_solve(t, teacher)
        if v is None:
            t.meta.pop("guard_violation", None)
        else:
            t.meta["guard_violation"] = v.model_dump(mode="json")


def guard_violation(t: Trajectory) -> str | None:
    """The guard a solve failed (``answer_leak``, ``correction_talk``), or None."""
    v = t.meta.get("guard_violation")
    return v.get("guard") if isinstance(v, dict) else None


def rejection_sample(trajs: list[Trajectory]) -> list[Trajectory]:
    """Keep only trajectories whose final answer is correct and that passed the teacher guards."""
    return [t for t in trajs if t.correct and guard_violation(t) is None]


def guard_counts(trajs: list[Trajectory]) -> dict[str, Any]:
    """Solves that failed a guard: in all, by guard, and how many of them were correct (dropped by the guard
    alone)."""
    bad = [t for t in trajs if guard_violation(t) is not None]
    return {"violations": len(bad), "by_guard": dict(collections.Counter(guard_violation(t) for t in bad)),
            "correct_dropped": sum(1 for t in bad if t.correct)}


def teacher_cost(trajs: list[Trajectory]) -> dict[str, Any]:
    usage = Usage()
    for t in trajs:
        usage.add(t.teacher_usage)
    kept = len(rejection_sample(trajs))
    return {
        "calls": usage.calls,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "retained": kept,
        "per_retained": usage.total_tokens / kept if kept else None,
        "guard": guard_counts(trajs),
    }
