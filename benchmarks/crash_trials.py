"""Crash trials: kill -9 the tiny pipeline at a random moment inside a stage, rerun the same command,
and check that the resumed run completes with the records of an uninterrupted run.

    python benchmarks/crash_trials.py --trials 20 --out /tmp/crash [--stages mps,bc_init,score_sft,score_rl,eval]

One uninterrupted reference run first (``OUT/reference``). Trial i targets stage ``stages[i % n]``:
it starts ``score-distill run --preset tiny`` in its own process group, waits until the target stage
has begun (the stage before it has its ``stage.json``), sleeps a random share of the reference's
duration for that stage, then SIGKILLs the whole group, and reruns the same command to the end.

Checks per trial (each a line in OUT/trials.jsonl):
* the resume exits 0 and every stage has its ``stage.json``;
* every ``*.jsonl`` parses fully (no torn tail left), and no ``*.tmp`` file or folder is left over;
* for each record file (tasks, teacher trajectories, MPS, split halves, eval files): the same task
  ids as the reference, none duplicated, none lost; and whether the records are identical to the
  reference's (ignoring timings and random ids) is recorded as ``identical``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from score_distill.pipeline import STAGE_NAMES as STAGES
from score_distill.utils.jsonl import append_jsonl, iter_json_lines

# Small enough for ~20 trials in an hour on 2 cores; every stage still runs and resumes.
OVERRIDES = ["tasks.suites=[math]", "tasks.n_train=6", "tasks.n_eval=2", "eval.policies=[bc_init,score_rl]",
             "bc_baseline.enabled=false", "mps.chunk_size=1", "rl.save_every=1"]
RECORD_GLOBS = ["tasks/*.jsonl", "bc_init/teacher_trajectories.jsonl", "mps/trajectories.jsonl", "split/*.jsonl",
                "eval/*/*/seed*.jsonl"]
VOLATILE = ("seconds", "id", "gen_seconds", "exec_seconds")  # timings and uuid4 ids differ between runs


LAST = {"stage": "report"}  # --to: the last stage every run goes to


def command(run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "score_distill.cli", "run", "--preset", "tiny", "--out", str(run_dir),
            "--to", LAST["stage"], *overrides]


def stages_run() -> list[str]:
    return STAGES[: STAGES.index(LAST["stage"]) + 1]


def run_to_end(run_dir: Path, overrides: list[str], log: Path) -> int:
    with open(log, "ab") as f:
        return subprocess.run(command(run_dir, overrides), stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}).returncode


def done(run_dir: Path, stage: str) -> bool:
    return (run_dir / stage / "stage.json").exists()


def current_stage(run_dir: Path) -> str:
    return next((s for s in stages_run() if not done(run_dir, s)), "finished")


def kill_inside(run_dir: Path, overrides: list[str], stage: str, delay: float, log: Path) -> dict:
    """Start a run, SIGKILL its process group ``delay`` s after ``stage`` began. Returns what happened."""
    before = STAGES[STAGES.index(stage) - 1] if STAGES.index(stage) else None
    with open(log, "ab") as f:
        proc = subprocess.Popen(command(run_dir, overrides), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    try:
        while proc.poll() is None and not (before is None or done(run_dir, before)):
            time.sleep(0.05)
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < delay:
            time.sleep(0.02)
        at = current_stage(run_dir)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"killed": True, "killed_in": at, "after_s": round(time.monotonic() - t0, 2)}
        return {"killed": False, "killed_in": None, "exit": proc.returncode}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _normal(obj):
    if isinstance(obj, dict):
        return {k: _normal(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_normal(v) for v in obj]
    return obj


def _records(path: Path) -> list[dict]:
    return [obj for _, obj in iter_json_lines(path, allow_torn_tail=False)]


def _task_id(rec: dict) -> str:
    return rec["task"]["id"] if "task" in rec else rec["id"]


def compare(run: Path, ref: Path) -> dict:
    problems: list[str] = []
    identical = True
    for s in stages_run():
        if not done(run, s):
            problems.append(f"{s}: no stage.json")
    for p in run.rglob("*"):
        if p.name.endswith(".tmp") or ".tmp." in p.name:
            problems.append(f"left over: {p.relative_to(run)}")
    for p in run.rglob("*.jsonl"):
        try:
            _records(p)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the finding
            problems.append(f"unreadable: {e}")
    for name in ("log.jsonl", "rollouts.jsonl"):  # RL: one line per update (and rollout), none twice
        lp, rp = run / "score_rl" / name, ref / "score_rl" / name
        if rp.exists() and lp.exists():
            steps = Counter(r["step"] for r in _records(lp))
            if steps != Counter(r["step"] for r in _records(rp)):
                problems.append(f"score_rl/{name}: updates {dict(steps)} != reference")
    for pattern in RECORD_GLOBS:
        for rp in sorted(ref.glob(pattern)):
            p = run / rp.relative_to(ref)
            if not p.exists():
                problems.append(f"missing: {p.relative_to(run)}")
                continue
            mine, theirs = _records(p), _records(rp)
            ids, ref_ids = Counter(map(_task_id, mine)), Counter(map(_task_id, theirs))
            dups = [k for k, n in ids.items() if n > 1]
            if dups:
                problems.append(f"{p.relative_to(run)}: duplicated {dups[:3]}")
            if set(ids) != set(ref_ids):
                problems.append(f"{p.relative_to(run)}: lost {sorted(set(ref_ids) - set(ids))[:3]}, "
                                f"extra {sorted(set(ids) - set(ref_ids))[:3]}")
            if [_normal(r) for r in sorted(mine, key=_task_id)] != [_normal(r) for r in sorted(theirs, key=_task_id)]:
                identical = False
    return {"ok": not problems, "problems": problems, "identical": identical}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("/tmp/crash_trials"))
    ap.add_argument("--stages", default="bc_init,mps,score_sft,score_rl,eval")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--to", default="report", help="last stage of every run")
    ap.add_argument("--override", action="append", default=[], help="extra key=value for every run")
    args = ap.parse_args()
    LAST["stage"] = args.to
    overrides = OVERRIDES + args.override
    stages = args.stages.split(",")
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ref = args.out / "reference"
    t0 = time.monotonic()
    if run_to_end(ref, overrides, args.out / "reference.log") != 0 or not done(ref, args.to):
        print(f"the reference run failed; see {args.out / 'reference.log'}", file=sys.stderr)
        return 1
    durations = {s: json.loads((ref / s / "stage.json").read_text())["seconds"] for s in stages_run()}
    print(f"reference run: {time.monotonic() - t0:.0f}s; stage seconds {durations}", flush=True)
    results = []
    for i in range(args.trials):
        stage = stages[i % len(stages)]
        run = args.out / f"trial{i:03d}"
        log = args.out / f"trial{i:03d}.log"
        delay = rng.uniform(0.05, 0.95) * max(0.5, durations[stage])
        t1 = time.monotonic()
        kill = kill_inside(run, overrides, stage, delay, log)
        rc = run_to_end(run, overrides, log)
        res = {"trial": i, "target": stage, "delay_s": round(delay, 2), **kill, "resume_exit": rc,
               **compare(run, ref), "seconds": round(time.monotonic() - t1, 1)}
        res["ok"] = res["ok"] and rc == 0
        append_jsonl(args.out / "trials.jsonl", [res])
        results.append(res)
        print(json.dumps(res), flush=True)
    killed = Counter(r["killed_in"] for r in results if r["killed"])
    summary = {"trials": len(results), "ok": sum(r["ok"] for r in results),
               "identical": sum(r["identical"] for r in results), "killed_in": dict(killed),
               "not_killed": sum(not r["killed"] for r in results), "seconds": round(time.monotonic() - t0)}
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] == summary["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
