"""The time one run (one study seed) took, stage by stage, read from the records its stages wrote.

    python benchmarks/seed_time.py --run STUDY/H8-seed0 [--eval-dir NAME] [--replace mps=873.8:REASON] [--json PATH]

A stage's ``stage.json`` counts only the process that finished it, so a stage that was interrupted and resumed
reads short. SCoRe-RL therefore also reports the sum of its updates' own times (``log.jsonl``: each update's
rollout and training seconds, whichever process ran it; a lost, unfinished update is not in the log), and the
script takes the larger of the two. ``--replace STAGE=SECONDS[,PEAK_GB]:REASON`` puts a figure measured apart (the same
stage run alone on a copy, ``benchmarks/stage_alone.py``) in place of a stage whose own time is not usable, and
the record keeps the reason. Evaluation is the sum of the per-policy times in ``RUN/<eval dir>/eval_seconds.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from score_distill.pipeline import STAGE_NAMES
from score_distill.pipeline.run_dir import git_revision, machine
from score_distill.utils.jsonl import read_jsonl

EVAL = "eval"


def rl_updates(run: Path) -> dict[str, Any] | None:
    log = run / "score_rl" / "log.jsonl"
    if not log.exists():
        return None
    ups = read_jsonl(log)
    return {
        "updates": len(ups),
        "rollout_seconds": round(sum(u.get("rollout_seconds") or 0.0 for u in ups), 1),
        "update_seconds": round(sum(u.get("update_seconds") or 0.0 for u in ups), 1),
    }


Replaced = dict[str, tuple[float, float | None, str]]


def seed_time(run: Path, eval_dir: str = EVAL, replace: Replaced | None = None) -> dict[str, Any]:
    replace = replace or {}
    unknown = sorted(set(replace) - set(STAGE_NAMES))
    if unknown:
        raise SystemExit(f"--replace: no stage named {', '.join(unknown)} (stages: {', '.join(STAGE_NAMES)})")
    stages: dict[str, dict[str, Any]] = {}
    not_run = []
    for name in STAGE_NAMES:
        if name in (EVAL, "report"):  # evaluation: below, from its per-policy times; the report is not timed
            continue
        p = run / name / "stage.json"
        if not p.exists() or (st := json.loads(p.read_text())).get("skipped"):
            not_run.append(name)
            continue
        row: dict[str, Any] = {"seconds": st["seconds"], "recorded_seconds": st["seconds"],
                               "peak_rss_gb": st.get("peak_rss_gb")}
        if name == "score_rl" and (ups := rl_updates(run)):
            row["updates"] = ups
            row["seconds"] = max(st["seconds"], round(ups["rollout_seconds"] + ups["update_seconds"], 1))
        stages[name] = row
    if not stages:
        raise SystemExit(f"{run}: no stage records (is it a run directory?)")
    times_p = run / eval_dir / "eval_seconds.json"
    if not times_p.exists():
        raise SystemExit(f"{times_p}: missing (the evaluation is not done)")
    per_policy = {k: v for k, v in json.loads(times_p.read_text()).items() if v is not None}
    stage_p = run / eval_dir / "stage.json"  # the pipeline's own evaluation stage records its memory
    rss = json.loads(stage_p.read_text()).get("peak_rss_gb") if stage_p.exists() else None
    stages[EVAL] = {"seconds": round(sum(per_policy.values()), 1), "peak_rss_gb": rss, "per_policy": per_policy}
    for name, (seconds, peak, reason) in replace.items():
        if name not in stages:
            raise SystemExit(f"--replace {name}: that stage did not run in {run}")
        # the recorded peak belongs to the process whose time is not used: keep it only under its own name
        stages[name].update(seconds=seconds, recorded_peak_rss_gb=stages[name].get("peak_rss_gb"), peak_rss_gb=peak,
                            replaced_by=reason)
    total = round(sum(s["seconds"] for s in stages.values()), 1)
    peaks = [s["peak_rss_gb"] for s in stages.values() if s.get("peak_rss_gb")]
    manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").exists() else {}
    history = [{k: h.get(k) for k in ("command", "git_revision")} for h in manifest.get("history", [])]
    return {"run": str(run), "run_history": history, "stages": stages, "not_run": not_run, "total_seconds": total,
            "total_hours": round(total / 3600, 2), "peak_rss_gb": max(peaks, default=None)}


def plot(rec: dict[str, Any], path: Path, target_h: float | None) -> None:
    import matplotlib  # lazy: the headless backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, s in rec["stages"].items() if s["seconds"] >= 1]
    starts, left = [], 0.0
    for n in names:
        starts.append(left / 60)
        left += rec["stages"][n]["seconds"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    mins = [rec["stages"][n]["seconds"] / 60 for n in names]
    ax.barh(names, mins, left=starts, color=["tab:gray" if rec["stages"][n].get("replaced_by") else "tab:blue"
                                             for n in names])
    for y, (x0, w, n) in enumerate(zip(starts, mins, names)):
        rss = rec["stages"][n].get("peak_rss_gb")
        ax.text(x0 + w + 1, y, f"{w:.0f} min" + (f", {rss:.1f} GB" if rss else ""), va="center", fontsize=8)
    if target_h:
        ax.axvline(target_h * 60, color="tab:red", ls="--", lw=1, label=f"{target_h:g} h")
        ax.legend(loc="lower right", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("minutes from the start of the run (stages back to back)")
    ax.set_title(f"{Path(rec['run']).name}: {rec['total_hours']} h in all; grey: measured apart", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_replace(items: list[str]) -> Replaced:
    out = {}
    for item in items:
        name, sep, rest = item.partition("=")
        figures, _, reason = rest.partition(":")
        seconds, _, peak = figures.partition(",")
        try:
            out[name] = (float(seconds), float(peak) if peak else None, reason)
        except ValueError:
            raise SystemExit(f"--replace {item!r}: expected STAGE=SECONDS[,PEAK_GB]:REASON") from None
        if not sep or not reason:
            raise SystemExit(f"--replace {item!r}: expected STAGE=SECONDS[,PEAK_GB]:REASON (the reason is kept)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="a run directory whose stages and evaluation are done")
    ap.add_argument("--eval-dir", default=EVAL, help="the evaluation folder inside the run (default: eval)")
    ap.add_argument("--replace", action="append", default=[], metavar="STAGE=SECONDS[,PEAK_GB]:REASON")
    ap.add_argument("--note", action="append", default=[], help="a sentence kept in the record's notes")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path, help="PNG: the stages back to back, with their peak memory")
    ap.add_argument("--target-hours", type=float, help="draw this time on the plot")
    a = ap.parse_args()
    out = {"what": "one run's time, stage by stage, from its stage records",
           "command": shlex.join(["python", "benchmarks/seed_time.py", *sys.argv[1:]]),
           **seed_time(a.run, a.eval_dir, parse_replace(a.replace)),
           "notes": a.note, "revision": git_revision(), "machine": machine()}
    for name, s in out["stages"].items():
        note = f"  ({s['replaced_by']})" if s.get("replaced_by") else ""
        rss = f"{s['peak_rss_gb']:5.1f} GB" if s.get("peak_rss_gb") else ""
        print(f"{name:16s} {s['seconds']:9.1f} s  {rss}{note}")
    print(f"{'total':16s} {out['total_seconds']:9.1f} s  ({out['total_hours']} h)")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    if a.plot:
        plot(out, a.plot, a.target_hours)


if __name__ == "__main__":
    main()
