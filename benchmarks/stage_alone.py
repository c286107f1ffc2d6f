"""One stage alone, timed, on a copy of a run whose earlier stages are done.

    python benchmarks/stage_alone.py --run RUN --stage mps [--set mps.chunk_size=30 ...] [--json out.json]
    python benchmarks/stage_alone.py --run RUN --stage score_rl --set rl.micro_batch_size=2

Copies ``RUN``'s config and the folders of the stages before ``--stage`` (models, not trainer checkpoints) to a
temporary folder, runs only ``--stage`` there with the same models, tasks and seeds, and prints its wall time,
peak resident memory and what it produced (MPS: statuses, corrections, teacher tokens; SCoRe-RL: each update's
rollout and training seconds, sequences and loss). ``--set`` changes the configuration as ``score-distill run
--set`` does, so two settings compare on the same inputs. The allocator is set as a run sets it before the stage.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from score_distill.config import load_config
from score_distill.pipeline import STAGE_NAMES, Pipeline
from score_distill.pipeline.run_dir import git_revision, machine
from score_distill.utils.jsonl import read_jsonl
from score_distill.utils.malloc import tune_malloc
from score_distill.utils.peak_memory import peak_rss_gb, reset_peak


def produced(stage: str, run: Path) -> dict[str, Any]:
    if stage == "mps":
        records = read_jsonl(run / "mps" / "trajectories.jsonl")
        return {
            "n_tasks": len(records),
            "status": dict(collections.Counter(r["meta"]["mps_status"] for r in records)),
            "corrections": dict(sorted(collections.Counter(len(r["corrections"]) for r in records).items())),
            "teacher_tokens": sum(r["teacher_usage"]["prompt_tokens"] + r["teacher_usage"]["completion_tokens"]
                                  for r in records),
        }
    if stage == "score_rl":
        keys = ("rollout_seconds", "update_seconds", "sequences", "tokens", "train_tokens", "loss", "reward_mean")
        return {"updates": [{k: u.get(k) for k in keys} for u in read_jsonl(run / "score_rl" / "log.jsonl")]}
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="a run directory whose earlier stages are done")
    ap.add_argument("--stage", required=True, choices=STAGE_NAMES)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as in `run --set`")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    before = STAGE_NAMES[: STAGE_NAMES.index(a.stage)]
    missing = [s for s in before if not (a.run / s / "stage.json").exists()]
    if missing:
        raise SystemExit(f"{a.run}: stage(s) {', '.join(missing)} not done")
    tune_malloc()
    with tempfile.TemporaryDirectory(prefix="stage-alone-") as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        for f in ("config.yaml", "manifest.json"):
            shutil.copy(a.run / f, run / f)
        for s in before:
            shutil.copytree(a.run / s, run / s, ignore=shutil.ignore_patterns("checkpoint-*", "optimizer.pt"))
        cfg = load_config(run / "config.yaml", overrides=a.overrides)
        reset_peak()
        t0 = time.perf_counter()
        Pipeline(cfg, run).run(only=[a.stage])
        seconds = time.perf_counter() - t0
        out = {
            "what": f"the {a.stage} stage alone on a copy of a run whose earlier stages are done",
            "run": str(a.run), "stage": a.stage, "overrides": a.overrides,
            "seconds": round(seconds, 1), "peak_rss_gb": peak_rss_gb(), **produced(a.stage, run),
            "revision": git_revision(), "machine": machine(),
        }
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
