"""Another held-out set for the trained policies of a run: ``n`` tasks per suite and horizon of stream ``seed``,
in ``RUN/eval-s<seed>-n<n>/``, without any task a policy of the run trained on. Its tasks are fixed the first
time (``tasks.jsonl``), so a resumed or repeated evaluation scores the same tasks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from score_distill.tasks.task_set import by_suite, task_set
from score_distill.trajectory import Task, Trajectory
from score_distill.utils.jsonl import read_jsonl, write_jsonl


def held_out_dir(ctx: Any, n: int | None, seed: int | None) -> Path:
    if n is None:
        return ctx.stage_dir("eval")
    return ctx.run.path / f"eval-s{ctx.cfg.tasks.eval_seed if seed is None else seed}-n{n}"


def trained_on(ctx: Any) -> list[Task]:
    """Every task any policy of the run was trained on (the equal-budget BC's further tasks included)."""
    tasks = ctx.run.tasks("train")
    extra = ctx.stage_dir("bc_equal_budget") / "extra_teacher_trajectories.jsonl"
    return tasks + ([t.task for t in read_jsonl(extra, Trajectory)] if extra.exists() else [])


def held_out_set(ctx: Any, n: int, seed: int | None) -> tuple[dict[str, list[Task]], Path]:
    d = held_out_dir(ctx, n, seed)
    tc = ctx.cfg.tasks
    seed = tc.eval_seed if seed is None else seed
    path = d / "tasks.jsonl"
    if not path.exists():
        kept, report = task_set(tc.suites, tc.horizons, n, seed, "eval", against=trained_on(ctx))
        if report.removed:
            print(f"   {report.removed} tasks of stream {seed} are training tasks of this run: left out",
                  file=sys.stderr)
        d.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, kept)
    return by_suite(read_jsonl(path, Task)), d
