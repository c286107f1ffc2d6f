"""SCoRe against behaviour cloning over horizons and training seeds: is SCoRe worth it on these tasks, against BC,
at equal teacher budget and equal training compute?

    score-distill compare --preset tiny --horizons 2 --seeds 0,1,2 --out runs/compare-tiny
    score-distill compare --config benchmarks/study_cpu_v2.yaml --horizons 2,4 --seeds 0,1,2 --out runs/study \
        --eval-n 100 --eval-seed 5000       # trained policies also scored on 100 tasks per suite of stream 5000
    score-distill compare ... --report-only             # aggregate what is evaluated so far
    score-distill compare ... --merge OTHER/study.json  # with runs of the same setup made elsewhere

For every horizon H and training seed it runs the pipeline (resumable) with the comparison's arms switched on
(``compare.*``: equal-budget BC, BC continued, the two RL ablations; with ``--match-compute`` the BC baseline and
equal-budget BC train as many SFT steps as BC init + SCoRe-SFT), then reads every policy's held-out episodes
and writes ``study.json``: per run the results, episodes, teacher tokens and each policy's training compute
(``runs[*].compute[policy]``); over runs the success table, the cost table, and ``comparisons``: paired over
distinct tasks (each task's success averaged over sampling and training seeds), with a sign test and a
task-clustered bootstrap 95% CI (:mod:`score_distill.compare.stats`). It prints what is and is not matched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from score_distill.compare import seed_free
from score_distill.compare.stats import compare_tasks, paired_episodes
from score_distill.config import load_config
from score_distill.pipeline import Pipeline
from score_distill.pipeline.compute import KEYS as COMPUTE_KEYS
from score_distill.stages.evaluate import metrics
from score_distill.trajectory import Trajectory
from score_distill.utils import console as run_console
from score_distill.utils.jsonl import read_jsonl, write_json

METHODS = ["student_init", "teacher", "bc_baseline", "bc_equal_budget", "bc_init", "bc_continued", "score_sft",
           "score_rl", "rl_long_horizon", "rl_sparse_reward"]
# The comparison's arms: the configuration switch of each (the pipeline trains it as a stage of that name).
ARMS = {"bc_baseline": "bc_baseline.enabled", "bc_equal_budget": "compare.bc_equal_budget",
        "bc_continued": "compare.bc_continued", "rl_sparse_reward": "compare.rl_sparse_reward",
        "rl_long_horizon": "compare.rl_long_horizon"}
# Compared task by task on the same held-out tasks (``comparisons``): with tens of tasks, a gap of a few points
# between two methods is only worth reporting with its test and interval.
PAIRS = [("score_rl", "bc_baseline"), ("score_rl", "bc_equal_budget"), ("score_sft", "bc_baseline"),
         ("score_sft", "bc_continued"), ("score_rl", "bc_continued"), ("score_rl", "score_sft"),
         ("score_rl", "rl_long_horizon"), ("score_rl", "rl_sparse_reward")]


def run_config(preset: str, config_file: str | None, overrides: list[str], h: int, seed: int,
               methods: list[str] | None = None, match_compute: bool = True):
    """The configuration of one (H, seed): the user's, at horizon H and training seed ``seed``, with the arms of
    ``methods`` (all by default) switched on and the others off."""
    wanted = set(methods or METHODS)
    arms = [f"{key}={str(m in wanted).lower()}" for m, key in ARMS.items()]
    own = [m for m in ("teacher", "student_init", "bc_init", "bc_baseline", "score_sft", "score_rl") if m in wanted]
    return load_config(config_file, [*overrides, f"tasks.horizons=[{h}]", f"seed={seed}",
                                     f"tasks.train_seed={1000 + 7 * seed}", f"agent.max_steps={max(h + 3, 6)}",
                                     f"name=study-H{h}-s{seed}", *arms,
                                     f"compare.match_compute={str(match_compute).lower()}",
                                     f"eval.policies=[{', '.join(own)}]"], preset=preset)


def run_one(preset: str, h: int, seed: int, out: Path, overrides: list[str],
            config_file: str | None = None, report_only: bool = False,
            eval_n: int | None = None, eval_seed: int | None = None,
            methods: list[str] | None = None, match_compute: bool = True) -> dict[str, Any] | None:
    """Train and evaluate everything for one (H, seed) (the pipeline, resumable); with ``report_only``, only read
    what is on disk (None when nothing of this run is evaluated yet). ``eval_n``/``eval_seed``: also score every
    policy on that held-out set (``score_distill.compare.held_out``) and report it instead of the run's own."""
    from score_distill.compare.held_out import held_out_dir, held_out_set
    from score_distill.pipeline.stages.eval import evaluate, policies

    cfg = run_config(preset, config_file, overrides, h, seed, methods, match_compute)
    pipe = Pipeline(cfg, out / f"H{h}-seed{seed}", preset=preset)
    t0 = time.perf_counter()
    eval_dir = held_out_dir(pipe.ctx, eval_n, eval_seed)
    results_p = eval_dir / "results.json"
    if report_only:
        if not results_p.exists():
            return None
    else:
        # The stages up to the last one a wanted method needs (teacher and student_init: the tasks), then eval.
        from score_distill.pipeline import STAGE_NAMES

        last = max(STAGE_NAMES.index(m) if m in STAGE_NAMES else 0 for m in (methods or METHODS))
        # With another held-out set the record is that set's: the run's own small eval would be spent for nothing.
        pipe.run(only=[*STAGE_NAMES[: last + 1], *([] if eval_n is not None else ["eval"]), "report"])
        if eval_n is not None:
            try:
                suites, _ = held_out_set(pipe.ctx, eval_n, eval_seed)
                names = policies(cfg)
                siblings = [p for p in out.glob(f"H{h}-seed*") if p.is_dir() and p != pipe.run_dir.path]
                reused = seed_free.reuse(cfg, eval_dir, siblings, names, list(suites))
                for policy, run in reused.items():
                    print(f"   {policy}: held-out episodes taken from {run} (the same policy, tasks and settings)",
                          file=sys.stderr)
                evaluate(pipe.ctx, cfg, names, suites, eval_dir)
                seed_free.record_keys(cfg, eval_dir, list(suites))
            finally:
                pipe.close()
    return run_record(pipe, h, seed, setup(preset, config_file, overrides, eval_n, eval_seed, match_compute),
                      eval_dir, time.perf_counter() - t0)


def run_record(pipe: Pipeline, h: int, seed: int, made: dict[str, Any], eval_dir: Path,
               seconds: float) -> dict[str, Any]:
    """One (H, seed)'s entry of study.json, from its run directory."""
    results, episodes = rescore(eval_dir, json.loads((eval_dir / "results.json").read_text()))
    summary = pipe.summary()
    stages = {s: v["seconds"] for s, v in summary["stages"].items() if v.get("seconds")}
    times = {}
    for name in ("eval_seconds.json", "study_eval.json"):  # study_eval.json: records of earlier versions
        if (eval_dir / name).exists():
            times = {k: v for k, v in json.loads((eval_dir / name).read_text()).items() if v is not None}
            break
    if times and eval_dir.name != "eval":
        stages["eval"] = round(sum(times.values()), 1)
    st = pipe.stage_state("bc_equal_budget") or {}
    budget = {k: v for k, v in st.items()
              if k in ("budget_tokens", "spent_tokens", "trajectories", "retained", "beyond_the_baseline")}
    matched = {s: m for s in ("bc_baseline", "bc_equal_budget", "bc_continued")
               if (m := (pipe.stage_state(s) or {}).get("matched"))}
    manifest = pipe.run_dir.manifest()
    reused_p = eval_dir / seed_free.REUSED_FILE
    reused = json.loads(reused_p.read_text()) if reused_p.exists() else {}
    n_held_out = {suite: m.get("n_tasks") for suite, m in next(iter(results.values()), {}).items()}
    return {"h": h, "seed": seed, "setup": made, "held_out": {"dir": eval_dir.name, "n_tasks": n_held_out},
            "recorded": {k: manifest.get(k) for k in ("created", "command", "git_revision", "machine", "history")},
            "results": results, "episodes": episodes, "teacher_tokens": summary["teacher_tokens"],
            "mps": summary["mps"], "equal_budget": budget, "compute": summary["compute"], "matched": matched,
            "stage_seconds": stages, "eval_seconds": times, **({"reused_episodes": reused} if reused else {}),
            "seconds": round(sum(stages.values()), 1), "session_seconds": round(seconds, 1)}


def setup(preset: str, config_file: str | None, overrides: list[str], eval_n: int | None = None,
          eval_seed: int | None = None, match_compute: bool | None = None) -> dict[str, Any]:
    """What makes two studies' runs comparable: the preset, the configuration file's text, the overrides and
    the held-out set (the per-run horizon and seed are the run's own keys)."""
    text = Path(config_file).read_bytes() if config_file else b""
    out = {"preset": preset, "config": config_file, "config_sha256": hashlib.sha256(text).hexdigest()[:16],
           "overrides": list(overrides), "eval_n": eval_n, "eval_seed": eval_seed}
    # Recorded only when set: records made before compute-matched controls existed compare equal without it.
    return out if match_compute is None else {**out, "match_compute": match_compute}


def merge_runs(runs: list[dict[str, Any]], files: list[str], want: dict[str, Any]) -> list[dict[str, Any]]:
    """Add the runs of earlier studies (``study.json`` files, e.g. from other sessions or machines) whose
    (H, seed) is not among ``runs``; a run of another setup is refused, not averaged in."""
    have = {(r["h"], r["seed"]) for r in runs}
    merged = list(runs)
    for f in files:
        try:
            other = json.loads(Path(f).read_text())["runs"]
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"--merge {f}: not a study.json ({e})") from None
        for r in other:
            got = r.get("setup")
            if got is None or {k: v for k, v in got.items() if k != "config"} != \
                    {k: v for k, v in want.items() if k != "config"}:
                raise SystemExit(f"--merge {f}: run H={r['h']} seed={r['seed']} was made with another setup "
                                 f"({got}) than this study ({want})")
            if (r["h"], r["seed"]) in have:
                mine = next(m for m in merged if (m["h"], m["seed"]) == (r["h"], r["seed"]))
                taken = fill_from(mine, r, f)
                print(f"   H={r['h']} seed={r['seed']}: evaluated under --out"
                      + (f"; {', '.join(taken)} taken from {f}" if taken else f", {f}'s copy left out"),
                      file=sys.stderr)
                continue
            have.add((r["h"], r["seed"]))
            merged.append({**r, "merged_from": f})
    return sorted(merged, key=lambda r: (r["h"], r["seed"]))


def fill_from(mine: dict[str, Any], other: dict[str, Any], source: str) -> list[str]:
    """Complete a run with what an earlier record of the same setup, H and seed measured and it did not (a
    study run in pieces, ``--methods``): those policies' results and episodes, stage times and teacher costs.
    What ``mine`` measured itself stays; ``merged_policies`` names what came from where."""
    taken = [p for p in other.get("results", {}) if p not in mine.setdefault("results", {})]
    for p in taken:
        mine["results"][p] = other["results"][p]
        if p in other.get("compute", {}):
            mine.setdefault("compute", {})[p] = other["compute"][p]
        if p in other.get("episodes", {}):
            mine.setdefault("episodes", {})[p] = other["episodes"][p]
        if p in other.get("eval_seconds", {}):
            mine.setdefault("eval_seconds", {})[p] = other["eval_seconds"][p]
    for key in ("teacher_tokens", "stage_seconds"):
        for k, v in other.get(key, {}).items():
            mine.setdefault(key, {}).setdefault(k, v)
    if not mine.get("equal_budget") and other.get("equal_budget"):
        mine["equal_budget"] = other["equal_budget"]
    if taken:
        mine.setdefault("merged_policies", {}).update({p: source for p in taken})
        if mine.get("eval_seconds"):
            mine.setdefault("stage_seconds", {})["eval"] = round(sum(mine["eval_seconds"].values()), 1)
        mine["seconds"] = round(sum(mine.get("stage_seconds", {}).values()), 1)
    return taken


def rescore(eval_dir: Path, results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Recompute every policy's metrics from its trajectory files, so runs evaluated by an older version
    gain the metrics added since (``progress``) without decoding anything again; and each episode's
    score, ``{policy: {suite: {"seed<s>/<task id>": score}}}``, for the paired comparisons."""
    out: dict[str, Any] = {}
    episodes: dict[str, Any] = {}
    for policy, per_suite in results.items():
        out[policy] = {}
        for suite, m in per_suite.items():
            files = sorted((eval_dir / policy / suite).glob("seed*.jsonl"))
            per_seed = [read_jsonl(f, Trajectory) for f in files]
            out[policy][suite] = metrics(per_seed) if files else m
            if files:
                episodes.setdefault(policy, {})[suite] = {f"{f.stem}/{t.task.id}": t.score
                                                          for f, trajs in zip(files, per_seed) for t in trajs}
    return out, episodes


def _success(res: dict[str, Any], method: str, key: str = "success_mean") -> float | None:
    per_suite = res["results"].get(method)
    if not per_suite or any(key not in m for m in per_suite.values()):
        return None
    return statistics.fmean(m[key] for m in per_suite.values())


def _table(runs: list[dict[str, Any]], key: str) -> dict[str, dict[int, dict[str, float]]]:
    """method -> H -> mean ± std over seeds (each seed's figure averaged over suites and sampling seeds)."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    for method in METHODS:
        for h in sorted({r["h"] for r in runs}):
            vals = [v for r in runs if r["h"] == h and (v := _success(r, method, key)) is not None]
            if vals:
                table.setdefault(method, {})[h] = {"mean": statistics.fmean(vals),
                                                   "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                                                   "n": len(vals)}
    return table


def comparisons(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each H and pair (a, b) of ``PAIRS`` both evaluated with their episodes kept: the comparison over
    distinct held-out tasks (``score_distill.compare.stats``), over every run (training seed) of that H."""
    out = []
    for h in sorted({r["h"] for r in runs}):
        rs = [r for r in runs if r["h"] == h]
        for a, b in PAIRS:
            both = [r for r in rs if a in r.get("episodes", {}) and b in r.get("episodes", {})]
            if not both:
                continue
            pairs = paired_episodes([r["episodes"][a] for r in both], [r["episodes"][b] for r in both])
            out.append({**compare_tasks(a, b, h, pairs), "runs": len(both)})
    return out


def compute_table(runs: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """method -> H -> training compute (``compute`` keys), mean over the runs that recorded it."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    for method in METHODS:
        for h in sorted({r["h"] for r in runs}):
            recs = [c for r in runs if r["h"] == h and (c := (r.get("compute") or {}).get(method))]
            if recs:
                table.setdefault(method, {})[h] = {k: statistics.fmean(c.get(k, 0) for c in recs)
                                                   for k in COMPUTE_KEYS} | {"n": len(recs)}
    return table


def matched_statements(agg: dict[str, Any]) -> list[str]:
    """What the compute table shows is and is not matched, in plain words, per H."""
    out = []
    for h in sorted({h for m in agg["compute"].values() for h in m}):
        c = {m: v[h] for m, v in agg["compute"].items() if h in v}
        sft = c.get("score_sft", {}).get("sft_steps")
        for arm in ("bc_baseline", "bc_equal_budget"):
            if arm in c and sft is not None:
                steps = c[arm]["sft_steps"]
                out.append(f"H={h}: {arm} SFT steps {steps:.0f} vs BC init + SCoRe-SFT {sft:.0f}: "
                           + ("matched" if steps == sft else "NOT matched"))
        if "bc_continued" in c and sft is not None:
            steps = c["bc_continued"]["sft_steps"]
            out.append(f"H={h}: bc_continued SFT steps {steps:.0f} vs SCoRe-SFT's chain {sft:.0f}: "
                       + ("matched (same start, same steps; only the data differs)" if steps == sft else "NOT matched"))
        if "score_rl" in c:
            rl = c["score_rl"]
            out.append(f"H={h}: SCoRe-RL adds {rl['rl_updates']:.0f} RL optimizer steps ({rl['rl_tokens']:,.0f} tokens "
                       "trained) "
                       "that no BC arm matches; SFT tokens differ with the data's lengths (table above)")
    out.append("teacher tokens: matched only between SCoRe and equal-budget BC (the BC baseline uses every "
               "training task's demonstration)")
    return out


def mps_cost(run: dict[str, Any]) -> dict[str, float | None] | None:
    """Why one run's MPS costs what it costs (``score_distill.stages.mps.cost_breakdown`` against the run's BC
    baseline); None when the run lacks the figures (no MPS, no BC baseline, no task helped)."""
    from score_distill.stages.mps import cost_breakdown

    bc = (run.get("teacher_tokens") or {}).get("bc_baseline", {}).get("per_retained")
    b = cost_breakdown(run.get("mps") or {}, bc) if bc else None
    return b if b and b["tokens_per_helped_task"] is not None else None


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    table = _table(runs, "success_mean")
    progress = _table(runs, "progress")
    cost = {}
    for h in sorted({r["h"] for r in runs}):
        rs = [r for r in runs if r["h"] == h]
        bc = [r["teacher_tokens"].get("bc_baseline", {}).get("per_retained") for r in rs]
        mps = [r["teacher_tokens"].get("mps", {}).get("per_retained") for r in rs]
        both = [(b, m) for b, m in zip(bc, mps) if b and m]
        if both:
            # Their ratio is a target: both from the same runs, not MPS over seeds whose BC baseline is not run yet.
            bc, mps = zip(*both)
        cost[h] = {"bc_per_retained": statistics.fmean([x for x in bc if x]) if any(bc) else None,
                   "mps_per_retained": statistics.fmean([x for x in mps if x]) if any(mps) else None}
        # With no run that has both, the two means come from different runs: shown, but no ratio is taken.
        cost[h]["mps_over_bc"] = cost[h]["mps_per_retained"] / cost[h]["bc_per_retained"] if both else None
        cost[h]["ratio_runs"] = len(both)
        why = [b for r in rs if (b := mps_cost(r))]
        for k in ("solved_alone", "helped_over_bc", "break_even_solved_alone"):
            vals = [b[k] for b in why if b[k] is not None]
            cost[h][k] = statistics.fmean(vals) if vals else None
    return {"success": table, "progress": progress, "cost": cost, "compute": compute_table(runs),
            "comparisons": comparisons(runs)}


def targets(agg: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    s, c = agg["success"], agg["cost"]
    out = []

    def get(m, h):
        return s.get(m, {}).get(h, {}).get("mean")

    t, rl = get("teacher", 4), get("score_rl", 4)
    out.append(("SCoRe-RL >= 90% of teacher at H=4", None if t is None or rl is None else rl >= 0.9 * t,
                f"score_rl {rl} vs teacher {t}"))
    # Every horizon where both are measured (the issue names none); met only if met at each of them.
    hs = sorted({h for m in s.values() for h in m})
    gains = {h: (get("bc_equal_budget", h) - get("student_init", h), get("score_rl", h) - get("student_init", h))
             for h in hs if None not in (get("student_init", h), get("bc_equal_budget", h), get("score_rl", h))}
    ok = None if not gains else all(sc > 0 and bc <= 0.75 * sc for bc, sc in gains.values())
    out.append(("equal budget: BC gain <= 75% of SCoRe gain", ok,
                "gains over the untrained student (BC, SCoRe-RL): "
                + (", ".join(f"H={h}: ({bc:.2f}, {sc:.2f})" for h, (bc, sc) in gains.items()) or "none measured")))
    margins = {h: None if None in (get("score_rl", h), get("bc_baseline", h))
               else get("score_rl", h) - get("bc_baseline", h) for h in hs}
    ok = None if len(hs) < 2 or None in (margins[hs[0]], margins[hs[-1]]) else margins[hs[-1]] > margins[hs[0]]
    out.append((f"SCoRe margin over BC grows from H={hs[0] if hs else '?'} to H={hs[-1] if hs else '?'}", ok,
                f"margins {margins}"))
    ratios = [v["mps_over_bc"] for v in c.values() if v.get("mps_over_bc") is not None]
    out.append(("MPS teacher tokens per retained <= 1/3 of BC's", None if not ratios else max(ratios) <= 1 / 3,
                f"ratios {[round(r, 3) for r in ratios]}"
                + "".join(f"; H={h}: student solved {v['solved_alone']:.0%} alone, needs "
                          f"{v['break_even_solved_alone']:.0%}" for h, v in c.items()
                          if v.get("break_even_solved_alone") is not None)))
    return out


def _plot_vs_horizon(plt: Any, table: dict[str, Any], ylabel: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, by_h in table.items():
        hs = sorted(by_h)
        ax.errorbar(hs, [by_h[h]["mean"] for h in hs], yerr=[by_h[h]["std"] for h in hs], marker="o",
                    capsize=3, label=method, linestyle="--" if method in ("teacher", "student_init") else "-")
    ax.set_xlabel("horizon H (dependent steps)")
    ax.set_ylabel(ylabel)
    ax.set_xticks(sorted({h for m in table.values() for h in m}))
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{ylabel} vs horizon")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def record_prefix(runs: list[dict[str, Any]], eval_n: int | None) -> str:
    """The prefix of the record's and the plots' names: none for the study's own held-out set, "eval-s<S>-n<N>_"
    for a wider one (--eval-n), whose record and plots then sit beside the study's own, never over them."""
    return "" if eval_n is None else f"{runs[0]['held_out']['dir']}_"


def plots(agg: dict[str, Any], runs: list[dict[str, Any]], out: Path, prefix: str = "") -> None:
    # Lazy: the CLI builds its parser from this module; the backend must be chosen before pyplot loads.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, ylabel, name in (("success", "success on held-out tasks", "success_vs_horizon.png"),
                              ("progress", "key steps right before the first error", "progress_vs_horizon.png")):
        _plot_vs_horizon(plt, agg[key], ylabel, out / f"{prefix}{name}")

    series = {}
    for method, key in (("bc_baseline", "bc_baseline"), ("score_rl", None), ("bc_equal_budget", None)):
        xs, ys = [], []
        for r in runs:
            tt = r["teacher_tokens"]
            if key:
                x = tt.get(key, {}).get("prompt_tokens", 0) + tt.get(key, {}).get("completion_tokens", 0)
            elif method == "bc_equal_budget":
                x = r["equal_budget"].get("spent_tokens", 0)
            else:
                x = (tt.get("bc_init", {}).get("prompt_tokens", 0) + tt.get("bc_init", {}).get("completion_tokens", 0)
                     + tt.get("mps", {}).get("tokens", 0))
            y = _success(r, method)
            if y is not None and x > 0:  # a method this study did not run has no point (and log(0) none either)
                xs.append(x)
                ys.append(y)
        if xs:
            series[method] = (xs, ys)
    if not series:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, (xs, ys) in series.items():
        ax.scatter(xs, ys, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("teacher tokens spent (log)")
    ax.set_ylabel("success on held-out tasks")
    ax.legend(fontsize=8)
    ax.set_title("success vs teacher budget (one point per H and seed)")
    fig.tight_layout()
    fig.savefig(out / f"{prefix}success_vs_teacher_tokens.png", dpi=120)
    plt.close(fig)


def print_report(agg: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    hs = sorted({r["h"] for r in runs})
    for key, title in (("success", "success on held-out tasks (mean ± std over seeds; suites averaged)"),
                       ("progress", "key steps right before the first critical error (mean ± std over seeds; "
                                    "graded where success is 0/1)")):
        print(f"\n{title}")
        print(f"{'method':18s}" + "".join(f"{'H=' + str(h):>16s}" for h in hs))
        for method in METHODS:
            row = agg[key].get(method, {})
            cells = [f"{row[h]['mean']:.3f} ± {row[h]['std']:.3f}" if h in row else "-" for h in hs]
            print(f"{method:18s}" + "".join(f"{c:>16s}" for c in cells))
    # Each run's own figure too: with a few seeds, mean ± std hides which seed did what.
    cols = [(r["h"], r["seed"]) for r in runs]
    print("\nsuccess per run (H/seed; suites averaged)")
    print(f"{'method':18s}" + "".join(f"{f'H={h}/s{s}':>10s}" for h, s in cols))
    for method in METHODS:
        cells = [f"{v:.3f}" if (v := _success(r, method)) is not None else "-" for r in runs]
        print(f"{method:18s}" + "".join(f"{c:>10s}" for c in cells))
    print("\npaired over distinct held-out tasks (a vs b: tasks where a scored higher / lower / the same, each task "
          "averaged over sampling and training seeds; two-sided sign test; 95% CI of the mean difference, "
          "task-clustered bootstrap)")
    if not agg["comparisons"]:
        print("  none: no run has both methods of a pair evaluated with their episodes kept")
    for c in agg["comparisons"]:
        ci = "-" if c["diff_ci95"] is None else f"[{c['diff_ci95'][0]:+.3f}, {c['diff_ci95'][1]:+.3f}]"
        name = f"{c['a']} vs {c['b']}"
        print(f"  H={c['horizon']} {name:34s} {c['better']:>3d} / {c['worse']:>3d} / {c['same']:>3d}"
              f"   p = {c['p_value']:.3f}   diff {c['diff_mean'] or 0:+.3f} {ci}   ({c['n_tasks']} tasks, "
              f"{c['runs']} run{'s' if c['runs'] > 1 else ''})")
    print("\ntraining compute from the untrained student (mean over seeds): SFT steps, SFT tokens, RL optimizer steps, "
          "RL tokens")
    for method, by_h in agg["compute"].items():
        cells = ", ".join(f"H={h}: {v['sft_steps']:.0f} / {v['sft_tokens']:,.0f} / {v['rl_updates']:.0f} / "
                          f"{v['rl_tokens']:,.0f}" for h, v in by_h.items())
        print(f"  {method:18s} {cells}")
    print("\nwhat is and is not matched")
    for line in matched_statements(agg):
        print(f"  {line}")
    print("\nteacher tokens per retained trajectory (estimated for the oracle teacher)")
    for h, v in agg["cost"].items():
        runs_s = f"{v['ratio_runs']} run{'s' if v['ratio_runs'] > 1 else ''}"
        ratio = (f"MPS / BC {v['mps_over_bc']:.3f} ({runs_s} with both)"
                 if v.get("mps_over_bc") is not None else "no ratio: no run has both figures")
        per = {k: "-" if v.get(k) is None else f"{v[k]:,.0f}" for k in ("bc_per_retained", "mps_per_retained")}
        print(f"  H={h}: BC {per['bc_per_retained']}, MPS {per['mps_per_retained']}; {ratio}")
        if v.get("helped_over_bc") is not None:
            even = v.get("break_even_solved_alone")
            print(f"        the student solved {v['solved_alone']:.0%} of MPS tasks alone; a helped task cost "
                  f"{v['helped_over_bc']:.2f} BC demonstrations; "
                  + ("no helped task was retained" if even is None else
                     f"MPS reaches 1/3 of BC once the student solves {even:.0%} alone"))
    print("\nwall time per stage (s, mean over seeds)")
    stages = sorted({s for r in runs for s in r["stage_seconds"]})
    for h in hs:
        rs = [r for r in runs if r["h"] == h]
        cells = ", ".join(f"{s} {statistics.fmean(v):.0f}" if (v := [r["stage_seconds"][s] for r in rs
                                                                 if s in r["stage_seconds"]]) else f"{s} -"
                          for s in stages)
        print(f"  H={h}: {cells}")
    print("\ntargets")
    for name, ok, detail in targets(agg):
        print(f"  [{'met' if ok else 'MISSED' if ok is False else 'n/a'}] {name}: {detail}")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``score-distill compare`` (and of benchmarks/distillation_study.py, the same driver)."""
    ap.add_argument("--preset", default="default")
    ap.add_argument("--config", default=None, help="YAML merged over the preset (e.g. benchmarks/study_cpu_v2.yaml)")
    ap.add_argument("--horizons", default="2,4,8")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds")
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--report-only", action="store_true",
                    help="train and decode nothing: aggregate the runs already evaluated under --out")
    ap.add_argument("--merge", action="append", default=[], metavar="STUDY_JSON",
                    help="also aggregate the runs of an earlier study.json of the same setup (another machine); a "
                         "run evaluated under --out takes precedence. Repeatable.")
    ap.add_argument("--eval-n", type=int, default=None, metavar="N",
                    help="score every trained policy on N held-out tasks per suite and horizon of --eval-seed's "
                         "stream (RUN/eval-s<seed>-n<N>/, recorded in OUT/eval-s<seed>-n<N>_study.json) instead of "
                         "the run's own held-out set; 100 or more to see a 10-point gap")
    ap.add_argument("--eval-seed", type=int, default=None, metavar="S",
                    help="task stream of --eval-n (default: the configuration's tasks.eval_seed); a stream nobody "
                         "tuned on re-tests every trained policy without retraining")
    ap.add_argument("--methods", default=None, metavar="M1,M2",
                    help=f"train and evaluate only these methods (of {','.join(METHODS)}) and what they build on; "
                         "with --merge, the rest of the same (H, seed) comes from the earlier study.json")
    ap.add_argument("--match-compute", action=argparse.BooleanOptionalAction, default=True,
                    help="the BC baseline and equal-budget BC train as many SFT steps as BC init + SCoRe-SFT "
                         "(default: on)")
    ap.add_argument("--verbose", action="store_true",
                    help="also show trainer and library logs on the terminal (always in each run's run.log)")
    ap.add_argument("overrides", nargs="*", help="config overrides applied to every run, e.g. tasks.n_train=32")


def run_study(args: argparse.Namespace) -> int:
    if args.eval_seed is not None and args.eval_n is None:
        raise SystemExit("--eval-seed needs --eval-n (how many tasks of that stream)")
    methods = args.methods.split(",") if args.methods else None
    if unknown := sorted(set(methods or []) - set(METHODS)):
        raise SystemExit(f"--methods: unknown {', '.join(unknown)} (methods: {', '.join(METHODS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    made = setup(args.preset, args.config, args.overrides, args.eval_n, args.eval_seed, args.match_compute)
    runs = []
    for h in [int(x) for x in args.horizons.split(",")]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            print(f"== H={h} seed={seed}", file=sys.stderr, flush=True)
            if not args.report_only:  # as `score-distill run`: library chatter to the run's log, not the terminal
                log = run_console.configure(out / f"H{h}-seed{seed}", verbose=args.verbose)
                print(f"   details in {log}", file=sys.stderr, flush=True)
            try:
                run = run_one(args.preset, h, seed, out, args.overrides, args.config, report_only=args.report_only,
                              eval_n=args.eval_n, eval_seed=args.eval_seed, methods=methods,
                              match_compute=args.match_compute)
            finally:
                if not args.report_only:
                    run_console.reset()
            if run is None:
                print(f"   H={h} seed={seed}: not evaluated yet, left out", file=sys.stderr)
                continue
            runs.append(run)
            agg = aggregate(runs)
            write_json(out / f"{record_prefix(runs, args.eval_n)}study.json",
                       {"args": vars(args), "runs": runs, "aggregate": agg, "comparisons": agg["comparisons"]})
    runs = merge_runs(runs, args.merge, made)
    if not runs:
        print("no evaluated runs", file=sys.stderr)
        return 1
    agg = aggregate(runs)
    prefix = record_prefix(runs, args.eval_n)
    write_json(out / f"{prefix}study.json", {"args": vars(args), "runs": runs, "aggregate": agg,
                                            "comparisons": agg["comparisons"],
                                            "targets": [{"target": n, "met": ok, "detail": d}
                                                        for n, ok, d in targets(agg)]})
    plots(agg, runs, out, prefix)
    print_report(agg, runs)
    print(f"\nwrote {out / f'{prefix}study.json'} and plots {prefix}success_vs_horizon.png, "
          f"{prefix}progress_vs_horizon.png, {prefix}success_vs_teacher_tokens.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    return run_study(ap.parse_args(argv))
