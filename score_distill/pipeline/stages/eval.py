"""Stage ``eval``: every policy of the run on its held-out tasks, per suite, mean ± std over sampling seeds.

The policies are ``eval.policies`` and every comparison arm switched on (``compare.*``); a policy whose stage
did not train a model is left out. Writes RUN/eval/<policy>/<suite>/seed<k>.jsonl and RUN/eval/results.json.
``evaluate`` is the same on another held-out set (``score-distill compare --eval-n``).
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

from score_distill.config import RunConfig
from score_distill.tasks.task_set import by_suite
from score_distill.trajectory import Task, Trajectory
from score_distill.utils.console import detail
from score_distill.utils.jsonl import write_json

console = detail  # RUN/run.log unless --verbose (utils/console.py)


def policies(cfg: RunConfig) -> list[str]:
    """``eval.policies``, then every comparison arm switched on (a stage with a configuration switch)."""
    from score_distill.pipeline.stages import STAGES, always

    arms = [s.name for s in STAGES if s.policy and s.enabled is not always and s.enabled(cfg)]
    return [*cfg.eval.policies, *(a for a in arms if a not in cfg.eval.policies)]


def policy_model(ctx: Any, cfg: RunConfig, policy: str) -> str | None:
    """The model a policy name stands for: the untrained student, or what its stage trained (None: not trained)."""
    if policy == "student_init":
        return cfg.student.model
    st = ctx.run.state(policy)
    return st.get("model") if st else None


def missing_policies(ctx: Any, cfg: RunConfig) -> list[str]:
    """Policies the eval stage would score now that its results do not hold (e.g. an arm switched on later)."""
    path = ctx.stage_dir("eval") / "results.json"
    have = set(json.loads(path.read_text())) if path.exists() else set()
    return [p for p in policies(cfg) if p not in have and (p == "teacher" or policy_model(ctx, cfg, p))]


def evaluate(ctx: Any, cfg: RunConfig, names: list[str], suites: dict[str, list[Task]], eval_dir: Path) -> dict:
    """Each policy of ``names`` on ``suites``, its files under ``eval_dir/<policy>``; finished files are reused.
    Merges into ``eval_dir/results.json`` (policies evaluated earlier keep their figures)."""
    from score_distill.stages.evaluate import evaluate_policy, policy_runner
    from score_distill.tasks.judge import make_answer_judge

    seeds = cfg.eval.seeds
    judge = make_answer_judge(cfg.eval.judge, eval_dir / "answer_judge_cache.jsonl")
    results: dict[str, Any] = {}
    times_p = eval_dir / "eval_seconds.json"  # per policy: the time of the evaluation that wrote its files
    times = json.loads(times_p.read_text()) if times_p.exists() else {}
    for policy in names:
        out_dir = eval_dir / policy
        t0 = time.perf_counter()
        if policy not in times and all((out_dir / s).exists() for s in suites):
            times[policy] = None  # evaluated before times were kept

        if policy == "teacher":
            teacher = ctx.res.teacher

            def run_teacher(jobs, _t=teacher) -> list[list[Trajectory]]:
                return [_t.solve(tasks) for tasks, _seed in jobs]

            # A deterministic teacher (the oracle) gives the same trajectories for every seed.
            t_seeds = seeds if cfg.teacher.kind == "llm" else seeds[:1]
            results[policy] = evaluate_policy(run_teacher, suites, t_seeds, out_dir, judge=judge)
            times.setdefault(policy, round(time.perf_counter() - t0, 2))
            continue
        model = policy_model(ctx, cfg, policy)
        if model is None:
            console.print(f"[dim]- {policy}: not trained in this run, not evaluated[/]")
            continue

        def run_policy(jobs, _model=model, _policy=policy) -> list[list[Trajectory]]:
            # Loaded only when some result file is missing (evaluate_policy reuses finished ones).
            pol = ctx.res.load_policy(_model, _policy)
            return policy_runner(pol, ctx.res.pool, cfg.agent, cfg.eval.sampling,
                                 tools_for=ctx.res.tools_for, label=f"eval {_policy}",
                                 common_seeds=cfg.eval.common_seeds)(jobs)

        results[policy] = evaluate_policy(run_policy, suites, seeds, out_dir, judge=judge)
        times.setdefault(policy, round(time.perf_counter() - t0, 2))
        write_json(times_p, times)
        gc.collect()
    old = eval_dir / "results.json"
    if old.exists():
        results = {**json.loads(old.read_text()), **results}
    write_json(eval_dir / "results.json", results)
    return results


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    results = evaluate(ctx, cfg, policies(cfg), by_suite(ctx.run.tasks("eval")), ctx.stage_dir("eval"))
    _tensorboard(ctx, cfg, results)
    return {"policies": sorted(results)}


def _tensorboard(ctx: Any, cfg: RunConfig, results: dict[str, Any]) -> None:
    if not cfg.tracking.tensorboard:
        return
    try:  # lazy: keeps torch out of importing the stage table (`score-distill --help` loads it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    w = SummaryWriter(str(ctx.run.path / "tensorboard" / "eval"))
    for i, policy in enumerate(["student_init", "bc_init", "score_sft", "score_rl"]):
        for suite, m in results.get(policy, {}).items():
            w.add_scalar(f"success/{suite}", m["success_mean"], i)
    w.close()
