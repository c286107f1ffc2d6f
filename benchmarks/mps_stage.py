"""The MPS stage alone, timed, on a copy of a run whose BC init is done.

    python benchmarks/mps_stage.py --run RUN [--set mps.chunk_size=30 ...] [--json out.json]

Copies ``RUN``'s config, tasks and BC-init model (not its checkpoints) to a temporary folder, runs only the
``mps`` stage there with the same student, teacher and seeds, and prints its wall time, peak resident memory and
what it produced (statuses, corrections, teacher tokens). ``--set`` changes the configuration as
``score-distill run --set`` does, so two settings compare on the same tasks and the same BC-init student.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import tempfile
import time
from pathlib import Path

from score_distill.config import load_config
from score_distill.pipeline import Pipeline
from score_distill.pipeline.run_dir import git_revision, machine
from score_distill.utils.jsonl import read_jsonl
from score_distill.utils.malloc import tune_malloc
from score_distill.utils.peak_memory import peak_rss_gb, reset_peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="a run directory whose bc_init stage is done")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as in `run --set`")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if not (a.run / "bc_init" / "stage.json").exists():
        raise SystemExit(f"{a.run}: its bc_init stage is not done")
    tune_malloc()  # as in a run, where BC init's trainer set it before MPS
    with tempfile.TemporaryDirectory(prefix="mps-stage-") as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        for f in ("config.yaml", "manifest.json"):
            shutil.copy(a.run / f, run / f)
        shutil.copytree(a.run / "tasks", run / "tasks")
        shutil.copytree(a.run / "bc_init", run / "bc_init", ignore=shutil.ignore_patterns("checkpoint-*"))
        cfg = load_config(run / "config.yaml", overrides=a.overrides)
        reset_peak()
        t0 = time.perf_counter()
        Pipeline(cfg, run).run(only=["mps"])
        seconds = time.perf_counter() - t0
        records = read_jsonl(run / "mps" / "trajectories.jsonl")
    out = {
        "what": "the MPS stage alone on a copy of a run whose BC init is done",
        "run": str(a.run),
        "overrides": a.overrides,
        "chunk_size": cfg.mps.chunk_size,
        "student_batch_size": cfg.student.batch_size,
        "seconds": round(seconds, 1),
        "peak_rss_gb": peak_rss_gb(),
        "n_tasks": len(records),
        "status": dict(collections.Counter(r["meta"]["mps_status"] for r in records)),
        "corrections": dict(sorted(collections.Counter(len(r["corrections"]) for r in records).items())),
        "teacher_tokens": sum(r["teacher_usage"]["prompt_tokens"] + r["teacher_usage"]["completion_tokens"]
                              for r in records),
        "revision": git_revision(),
        "machine": machine(),
    }
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
