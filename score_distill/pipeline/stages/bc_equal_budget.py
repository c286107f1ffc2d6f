"""Stage ``bc_equal_budget`` (``compare.bc_equal_budget``): behaviour cloning on as many teacher trajectories as
SCoRe's teacher budget buys (BC-init trajectories + MPS reviews and corrections, in teacher tokens).

It takes the baseline's teacher trajectories in task order, then, when SCoRe spent more than the whole
baseline, has the teacher solve further tasks of the same training streams (cleaned against every held-out
set of the run) until the budget is spent. With ``compare.match_compute``, as many SFT steps as BC init and
SCoRe-SFT together. Writes RUN/bc_equal_budget/extra_teacher_trajectories.jsonl and train/model.
"""

from __future__ import annotations

import json
from typing import Any

from score_distill.config import RunConfig
from score_distill.pipeline.bc_arms import baseline_teacher_trajectories, matched_sft, sft_steps
from score_distill.pipeline.sft import train_sft
from score_distill.stages.bc import guard_counts, rejection_sample, solve_resumable
from score_distill.tasks.task_set import task_set
from score_distill.trajectory import Task, Trajectory
from score_distill.utils.jsonl import read_jsonl


def _tokens(t: Trajectory) -> int:
    return t.teacher_usage.total_tokens


def held_out_tasks(ctx: Any) -> list[Task]:
    """Every held-out set of the run: the pipeline's and any wider one (``eval-s*-n*``)."""
    files = [ctx.stage_dir("tasks") / "eval.jsonl", *sorted(ctx.run.path.glob("eval-s*-n*/tasks.jsonl"))]
    return [t for f in files if f.exists() for t in read_jsonl(f, Task)]


def more_train_tasks(ctx: Any, cfg: RunConfig, n_more: int) -> list[Task]:
    """The run's training streams continued past its own tasks, cleaned against the held-out tasks."""
    tc = cfg.tasks
    have = {t.id for t in ctx.run.tasks("train")}
    more, _ = task_set(tc.suites, tc.horizons, tc.n_train + n_more, tc.train_seed, "train",
                       against=held_out_tasks(ctx), skip_ids=have)
    return more


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    d = ctx.stage_dir("bc_equal_budget")
    bc_init = read_jsonl(ctx.stage_dir("bc_init") / "teacher_trajectories.jsonl", Trajectory)
    mps = json.loads((ctx.stage_dir("mps") / "stats.json").read_text())
    budget = sum(_tokens(t) for t in bc_init) + mps["teacher_tokens"]
    pool = baseline_teacher_trajectories(ctx)
    chosen: list[Trajectory] = []
    spent = 0

    def take(trajs: list[Trajectory]) -> bool:
        nonlocal spent
        for t in trajs:
            if spent + _tokens(t) > budget:
                return False
            spent += _tokens(t)
            chosen.append(t)
        return True

    n_extra = 0
    if take(pool) and pool:
        per = max(1.0, spent / len(pool))
        more = more_train_tasks(ctx, cfg, int((budget - spent) / per * 1.25) + 4)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(0, len(more), 8):  # resumable: solved trajectories are reused on a rerun
            solved = solve_resumable(ctx.res.teacher, more[: i + 8], d / "extra_teacher_trajectories.jsonl")
            before = len(chosen)
            full = not take(solved[i:])
            n_extra += len(chosen) - before
            if full:
                break
    kept = rejection_sample(chosen)
    sft_cfg, matched = cfg.bc_baseline.sft, None
    if cfg.compare.match_compute:
        sft_cfg, matched = matched_sft(ctx, sft_cfg, sft_steps(ctx, "bc_init") + sft_steps(ctx, "score_sft"))
    info = train_sft(ctx, "bc_equal_budget", cfg.student.model, kept, sft_cfg, config_key="bc_baseline.sft")
    return {**info, "budget_tokens": budget, "spent_tokens": spent, "trajectories": len(chosen),
            "retained": len(kept), "guard": guard_counts(chosen),
            "beyond_the_baseline": n_extra, **({"matched": matched} if matched else {})}
