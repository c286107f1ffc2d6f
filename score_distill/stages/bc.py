"""Stage 1: cold-start behaviour cloning (BC init), and the behaviour-cloning baseline.

The teacher solves tasks as full trajectories (resumable: one record per task, appended in chunks);
rejection sampling keeps the correct ones; the student is fine-tuned on them. The baseline is the
same recipe on all training tasks (Agent Distillation), for comparison at a larger teacher budget.
"""

from __future__ import annotations

from pathlib import Path

from score_distill.teachers.base import Teacher
from score_distill.trajectory import Task, Trajectory, Usage
from score_distill.utils.jsonl import append_jsonl, read_jsonl


def solve_resumable(teacher: Teacher, tasks: list[Task], out_path: Path, chunk_size: int = 32) -> list[Trajectory]:
    """Teacher trajectories for ``tasks``, reusing those already in ``out_path``."""
    done: dict[str, Trajectory] = {}
    if out_path.exists():
        for t in read_jsonl(out_path, Trajectory):
            done.setdefault(t.task.id, t)
    todo = [t for t in tasks if t.id not in done]
    for i in range(0, len(todo), chunk_size):
        chunk = todo[i : i + chunk_size]
        trajs = teacher.solve(chunk)
        for t in trajs:
            t.meta["role"] = "teacher"
        append_jsonl(out_path, trajs)
        for t in trajs:
            done[t.task.id] = t
    return [done[t.id] for t in tasks if t.id in done]


def rejection_sample(trajs: list[Trajectory]) -> list[Trajectory]:
    """Keep only trajectories whose final answer is correct."""
    return [t for t in trajs if t.correct]


def teacher_cost(trajs: list[Trajectory]) -> dict[str, float | int | None]:
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
    }
