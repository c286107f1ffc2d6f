"""Stage ``tasks``: the run's training and held-out tasks, de-duplicated, and the BC / MPS split of training.

Writes RUN/tasks/{train,eval,bc,mps}.jsonl and dedupe.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from score_distill.config import RunConfig
from score_distill.stages.split import take_share
from score_distill.tasks.task_set import generate
from score_distill.trajectory import Task
from score_distill.utils.console import detail
from score_distill.utils.jsonl import write_json, write_jsonl

console = detail  # RUN/run.log unless --verbose (utils/console.py)


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    from score_distill.tasks.contamination import dedupe_against_eval

    tc = cfg.tasks
    train = generate(tc.suites, tc.horizons, tc.n_train, tc.train_seed, "train")
    evals = generate(tc.suites, tc.horizons, tc.n_eval, tc.eval_seed, "eval")
    if tc.seed_files or cfg.eval.benchmarks:
        from score_distill.tasks.benchmarks import load_benchmark
    for f in tc.seed_files:
        for t in load_benchmark(f):
            t.meta.setdefault("suite_key", Path(f).stem)
            train.append(t)
    bench: list[Task] = []
    for b in cfg.eval.benchmarks:
        tasks = load_benchmark(b)
        if cfg.eval.max_benchmark_tasks:
            tasks = tasks[: cfg.eval.max_benchmark_tasks]
        for t in tasks:
            t.meta["suite_key"] = Path(b).stem
        bench.extend(tasks)
    removed: dict[str, Any] = {}
    if tc.dedupe_against_eval:
        train, report = dedupe_against_eval(train, evals + bench)
        removed = report.to_dict()
        console.print(report.summary())
    bc_ids = take_share(train, cfg.bc.share, cfg.seed, "bc")
    bc = [t for t in train if t.id in bc_ids]
    mps = [t for t in train if t.id not in bc_ids]
    d = ctx.stage_dir("tasks")
    write_jsonl(d / "train.jsonl", train)
    write_jsonl(d / "eval.jsonl", evals + bench)
    write_jsonl(d / "bc.jsonl", bc)
    write_jsonl(d / "mps.jsonl", mps)
    write_json(d / "dedupe.json", removed)
    console.print(f"train {len(train)} (BC {len(bc)}, MPS {len(mps)}), eval {len(evals) + len(bench)}")
    return {"n_train": len(train), "n_eval": len(evals) + len(bench), "n_bc": len(bc), "n_mps": len(mps)}
