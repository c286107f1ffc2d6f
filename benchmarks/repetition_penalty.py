"""Held-out success of trained students under several repetition penalties, paired over tasks.

    python benchmarks/repetition_penalty.py --suite search --n 60 --eval-seed 9000 --penalties 1.1,1.0 \
        --json out.json RUN/bc_init/train/model RUN/score_sft/train/model

Why: a repetition penalty divides the logit of every token already in the context, the observations included,
so it works against copying a name out of a search result. This measures by how much, per task, with the agent
limits of the default preset (5 steps of at most 96 new tokens, H=2) and its sampling otherwise. Every model
and penalty sees the same tasks with the same per-episode seeds (the agent loop derives them from the sampling
seed and the task id); the JSON holds each task's outcome, and the
summary a sign test over the tasks where the two penalties disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scipy.stats import binomtest

from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes
from score_distill.models.base import SamplingParams
from score_distill.models.hf import TransformersPolicy
from score_distill.pipeline.run_dir import git_revision, machine
from score_distill.sandbox import SandboxConfig, SandboxPool
from score_distill.tasks.registry import make_tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="model folders (e.g. RUN/bc_init/train/model)")
    ap.add_argument("--suite", default="search")
    ap.add_argument("--horizon", type=int, default=2)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--eval-seed", type=int, default=9000, help="task stream (not the default run's own)")
    ap.add_argument("--penalties", default="1.1,1.0")
    ap.add_argument("--max-steps", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    penalties = [float(x) for x in a.penalties.split(",")]
    tasks = make_tasks(a.suite, a.n, a.horizon, seed=a.eval_seed, split="eval")
    out = {"what": __doc__.split("\n")[0], "command": " ".join(["python", *sys.argv]), "revision": git_revision(),
           "machine": machine(), "suite": a.suite, "horizon": a.horizon, "n_tasks": len(tasks),
           "eval_seed": a.eval_seed, "outcomes": {}, "success": {}, "paired": []}
    pool = SandboxPool(SandboxConfig(), max_workers=4)
    try:
        for path in a.models:
            label = Path(path).parts[-3] if len(Path(path).parts) >= 3 else path  # RUN/<stage>/train/model
            policy = TransformersPolicy(path, batch_size=len(tasks))
            for pen in penalties:
                params = SamplingParams(temperature=0.6, top_p=0.95, top_k=20, repetition_penalty=pen,
                                        max_new_tokens=a.max_new_tokens, seed=0)
                agent = AgentConfig(max_steps=a.max_steps, max_new_tokens=a.max_new_tokens, sampling=params,
                                    max_live_episodes=min(40, len(tasks)))
                trajs = run_episodes(policy, [EpisodeStart(t, id=t.id) for t in tasks], pool, agent, progress=None)
                key = f"{label}@{pen}"
                out["outcomes"][key] = {t.task.id: t.outcome == "correct" for t in trajs}
                out["success"][key] = sum(out["outcomes"][key].values()) / len(trajs)
                print(f"{key}: {sum(out['outcomes'][key].values())}/{len(trajs)}", flush=True)
            base, *others = [f"{label}@{p}" for p in penalties]
            for other in others:
                x, y = out["outcomes"][base], out["outcomes"][other]
                better = sum(y[k] and not x[k] for k in x)
                worse = sum(x[k] and not y[k] for k in x)
                p = binomtest(better, better + worse).pvalue if better + worse else 1.0
                out["paired"].append({"a": base, "b": other, "better": better, "worse": worse, "p_value": p})
                print(f"{other} vs {base}: better on {better} tasks, worse on {worse}, sign test p = {p:.3f}")
    finally:
        pool.close()
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
