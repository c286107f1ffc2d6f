"""The default run's record: wall time, stage times and memory, what it prints, and its models on more streams.

    python benchmarks/default_run.py --run RUN --json docs/figures/perf/default_run.json
    python benchmarks/default_run.py --run RUN --time-log TIME.log --json PATH   # RUN done under /usr/bin/time -v

Without ``--time-log`` it runs ``score-distill run --out RUN`` itself (RUN must not exist: a resumed run's wall time
means nothing) and takes the wall time and the child's peak resident memory. With it, RUN is a finished run and the
figures come from GNU time's report. Then it evaluates the run's BC-init, SCoRe-SFT and SCoRe-RL models on held-out
streams the run did not see (``STREAMS``, with ``score-distill eval``: same agent limits, common seeds) and compares
each step with the one before it per stream and over all streams' distinct tasks (sign test, task-resampled
interval): 20 tasks a suite, as the run evaluates, cannot show a 10-point step alone.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from score_distill.compare.steps import CHAIN, episode_comparisons, episode_scores
from score_distill.pipeline.run_dir import git_revision, machine

# (eval seed, suites, tasks per suite): more held-out tasks for the steps the run's 20 a suite cannot resolve
STREAMS: list[tuple[int, list[str], int]] = [(7000, ["math@H2", "search@H2"], 20), (9000, ["search@H2"], 60)]
MODELS = {"bc_init": "bc_init/train/model", "score_sft": "score_sft/train/model", "score_rl": "score_rl/model"}
EVAL_ARGS = ["--seeds", "0", "--max-steps", "5", "--max-new-tokens", "128", "--batch-size", "40"]


def time_log(path: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS GB) from a GNU ``time -v`` report."""
    text = path.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if not wall or not rss:
        raise SystemExit(f"{path}: not a GNU `time -v` report (no wall time or maximum resident set size)")
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = 60 * seconds + float(part)
    return round(seconds, 1), round(int(rss.group(1)) / 2**20, 2)


def run_default(run: Path) -> tuple[float, float]:
    if run.exists():
        raise SystemExit(f"{run} exists: time a fresh run, or pass --time-log for one timed already")
    t0 = time.perf_counter()
    subprocess.run(["score-distill", "run", "--out", str(run)], check=True)
    return round(time.perf_counter() - t0, 1), round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)


def stream_evals(run: Path, out: Path) -> dict[str, Any]:
    """Each model on each stream (finished files are kept: the eval resumes), then the chain's paired steps."""
    streams: dict[str, Any] = {}
    for seed, suites, n in STREAMS:
        d = out / str(seed)
        cmd_suites = [a for s in suites for a in ("--suite", s)]
        for policy, rel in MODELS.items():
            if all((d / policy / s / "seed0.jsonl").exists() for s in suites):
                continue
            subprocess.run(["score-distill", "eval", "--model", str(run / rel), *cmd_suites, "--n", str(n),
                            "--eval-seed", str(seed), *EVAL_ARGS, "--out", str(d)], check=True)
        results = {p: json.loads((d / p / "results.json").read_text()) for p in MODELS}
        policies = {p: {s: None for s in suites} for p in MODELS}
        streams[str(seed)] = {
            "command": f"score-distill eval --model RUN/<stage>/model {' '.join(cmd_suites)} --n {n} "
                       f"--eval-seed {seed} {' '.join(EVAL_ARGS)} --out OUT ({', '.join(MODELS.values())})",
            "policies": results,
            "episodes": episode_scores(d, policies),
        }
    return streams


def steps(episodes: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """Each policy of the method's chain against the one it continues from, per suite."""
    return episode_comparisons(episodes, CHAIN)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--time-log", type=Path, help="GNU `time -v` report of a finished `score-distill run`")
    ap.add_argument("--streams-dir", type=Path, help="where the stream evaluations go (default: RUN-streams)")
    ap.add_argument("--note", default="", help="what else the machine was doing")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    wall, peak = time_log(a.time_log) if a.time_log else run_default(a.run)
    summary = json.loads((a.run / "summary.json").read_text())
    manifest = json.loads((a.run / "manifest.json").read_text())
    stages = {k: v for k, v in summary["stages"].items() if v.get("status") == "done" and not v.get("skipped")}
    eval_seconds = json.loads((a.run / "eval" / "eval_seconds.json").read_text())

    run_eps = episode_scores(a.run / "eval", {p: v for p, v in summary["policies"].items() if p != "teacher"})
    streams = stream_evals(a.run, a.streams_dir or a.run.with_name(a.run.name + "-streams"))
    pooled: dict[str, dict[str, dict[str, float]]] = {}
    own = str(manifest["config"]["tasks"]["eval_seed"])
    for key, eps in [(own, run_eps), *((k, v.pop("episodes")) for k, v in streams.items())]:
        for policy, per in eps.items():
            for suite, scores in per.items():  # stream in the key: tasks of different streams are distinct
                pooled.setdefault(policy, {}).setdefault(suite, {}).update({f"{key}-{k}": v for k, v in scores.items()})
        if key != own:
            streams[key]["comparisons"] = steps(eps)
    record = {
        "what": "the default run: score-distill run (default preset), wall time, stage times and peak memory, "
                "held-out results, and the run's models on more held-out streams",
        "command": "python benchmarks/default_run.py " + shlex.join(sys.argv[1:]),
        "run_command": manifest["command"][1:],
        "revision": manifest.get("git_revision", "")[:7],
        "streams_revision": git_revision(),
        "machine": {**machine(), "note": a.note},
        "wall_seconds": wall,
        "peak_rss_gb": peak,
        "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
        "stage_peak_rss_gb": {k: v.get("peak_rss_gb") for k, v in stages.items()},
        "eval_seconds": eval_seconds,
        "eval_share": round(stages["eval"]["seconds"] / wall, 3),
        "policies": summary["policies"],
        "comparisons": summary["comparisons"],
        "compute": summary["compute"],
        "teacher_tokens": summary["teacher_tokens"],
        "mps": summary["mps"],
        "other_streams": streams,
        "pooled_over_streams": {
            "what": "each step over the distinct held-out tasks of every stream (the run's first, then the others)",
            "streams": [own, *streams],
            "comparisons": steps(pooled),
        },
    }
    text = json.dumps(record, indent=1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
