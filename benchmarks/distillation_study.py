"""SCoRe against behaviour cloning across horizons, and what each costs in teacher tokens.

    python benchmarks/distillation_study.py --preset tiny --horizons 2,4,8 --seeds 0,1,2 --out runs/study-tiny
    python benchmarks/distillation_study.py --config benchmarks/study_cpu.yaml --horizons 2,4,8 --seeds 0,1,2 \
        --out runs/study-cpu      # SmolLM2-135M on CPU: about 2 hours per (H, seed) at H=2, more beyond
    python benchmarks/distillation_study.py --report-only ...   # aggregate what is evaluated so far
    python benchmarks/distillation_study.py ... --merge docs/figures/study_cpu_v2.json  # with other sessions' runs
    python benchmarks/distillation_study.py ... --eval-n 50 --eval-seed 3000   # re-test trained policies elsewhere

For every horizon H and seed it runs the whole pipeline (resumable: rerun the same command after an
interruption), then trains what the pipeline does not:
- ``rl_long_horizon``  SCoRe-RL ablation: rollouts from the task, not the verified prefix;
- ``rl_sparse_reward`` SCoRe-RL ablation: outcome reward only;
- ``bc_equal_budget``  behaviour cloning on as many teacher trajectories as SCoRe's teacher budget buys
  (SCoRe's budget = BC-init trajectories + MPS reviews and corrections, in teacher tokens), with
  further tasks of the same training streams when the budget buys more than the baseline's tasks;
evaluates every policy on held-out tasks (eval seeds and H are arguments: rerun on seeds nobody tuned
on), prints a table of success mean ± std per method and H, teacher tokens per retained trajectory,
wall time per stage, compares methods episode by episode on the same held-out tasks (sign tests), checks
the targets, and writes ``study.json`` and plots (success and key-step
progress vs H; success vs teacher tokens) into ``--out``. "Progress" is the share of a task's key steps
a policy gets right before its first critical error (the oracle's rule): graded where success is not.
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

from score_distill.config import load_config
from score_distill.pipeline import STAGES, Pipeline
from score_distill.stages.evaluate import metrics
from score_distill.trajectory import Task, Trajectory
from score_distill.utils.jsonl import read_jsonl, write_json, write_jsonl

METHODS = ["student_init", "teacher", "bc_baseline", "bc_equal_budget", "bc_init", "score_sft", "score_rl",
           "rl_long_horizon", "rl_sparse_reward"]
# The pipeline stage after which each policy exists (the pipeline's order).
STAGE_POLICIES = [("tasks", ["student_init", "teacher"]), ("bc_init", ["bc_init"]), ("bc_baseline", ["bc_baseline"]),
                  ("score_sft", ["score_sft"]), ("score_rl", ["score_rl"])]
ABLATIONS = {"rl_long_horizon": {"long_horizon": True}, "rl_sparse_reward": {"sparse_reward": True}}
# Compared episode by episode on the same held-out tasks and sampling seeds (``paired``): with 10-50 tasks,
# a gap of a few points between two methods is only worth reporting with its sign test.
PAIRS = [("score_rl", "bc_baseline"), ("score_rl", "bc_equal_budget"), ("score_sft", "bc_baseline"),
         ("score_rl", "score_sft"), ("score_rl", "rl_long_horizon"), ("score_rl", "rl_sparse_reward")]


def _tokens(t: Trajectory) -> int:
    return t.teacher_usage.total_tokens


def _more_train_tasks(pipe: Pipeline, n_more: int) -> list[Task]:
    """The run's training streams continued past its own tasks (same seeds, so the same generator
    gives the run's tasks first), cleaned against the evaluation tasks like the run's own."""
    from score_distill.tasks.contamination import dedupe_against_eval
    from score_distill.tasks.registry import make_tasks

    tc = pipe.cfg.tasks
    have = {t.id for t in read_jsonl(pipe.stage_dir("tasks") / "train.jsonl", Task)}
    more: list[Task] = []
    for suite in tc.suites:
        for h in tc.horizons:
            for t in make_tasks(suite, tc.n_train + n_more, h, tc.train_seed, split="train"):
                if t.id not in have:
                    t.meta["suite_key"] = f"{suite}@H{h}"
                    more.append(t)
    more, _ = dedupe_against_eval(more, _held_out_tasks(pipe))
    return more


def _held_out_tasks(pipe: Pipeline) -> list[Task]:
    """Every held-out set of the run: the pipeline's and the study's wider ones (``eval-s*-n*``)."""
    files = [pipe.stage_dir("tasks") / "eval.jsonl", *sorted(pipe.dir.glob("eval-s*-n*/tasks.jsonl"))]
    return [t for f in files for t in read_jsonl(f, Task)]


def _trained_on(pipe: Pipeline) -> list[Task]:
    """Every task any policy of the run was trained on (the equal-budget BC's further tasks included)."""
    tasks = read_jsonl(pipe.stage_dir("tasks") / "train.jsonl", Task)
    extra = pipe.stage_dir("bc_equal_budget") / "extra_teacher_trajectories.jsonl"
    return tasks + ([t.task for t in read_jsonl(extra, Trajectory)] if extra.exists() else [])


def held_out_dir(pipe: Pipeline, n: int | None, seed: int | None) -> Path:
    if n is None:
        return pipe.stage_dir("eval")
    return pipe.dir / f"eval-s{pipe.cfg.tasks.eval_seed if seed is None else seed}-n{n}"


def held_out_set(pipe: Pipeline, n: int | None, seed: int | None) -> tuple[dict[str, list[Task]] | None, Path]:
    """Where the study evaluates: the run's own held-out tasks (``eval/``), or, with ``n`` (and ``seed``, the
    task stream, by default the run's ``tasks.eval_seed``), ``n`` tasks per suite of that stream in
    ``eval-s<seed>-n<n>/``: a wider evaluation, or one on a stream nobody tuned on, of the same trained
    policies. Its tasks are fixed the first time (``tasks.jsonl``); any that a policy trained on are dropped."""
    d = held_out_dir(pipe, n, seed)
    if n is None:
        return None, d
    from score_distill.tasks.contamination import dedupe_against_eval
    from score_distill.tasks.registry import make_tasks

    tc = pipe.cfg.tasks
    seed = tc.eval_seed if seed is None else seed
    path = d / "tasks.jsonl"
    if not path.exists():
        tasks = []
        for suite in tc.suites:
            for h in tc.horizons:
                for t in make_tasks(suite, n, h, seed, split="eval"):
                    t.meta["suite_key"] = f"{suite}@H{h}"
                    tasks.append(t)
        kept, _ = dedupe_against_eval(tasks, _trained_on(pipe))
        if len(kept) < len(tasks):
            print(f"   {len(tasks) - len(kept)} of {len(tasks)} tasks of stream {seed} are training tasks of this "
                  "run: left out", file=sys.stderr)
        d.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, kept)
    suites: dict[str, list[Task]] = {}
    for t in read_jsonl(path, Task):
        suites.setdefault(t.meta["suite_key"], []).append(t)
    return suites, d


def train_equal_budget_bc(pipe: Pipeline) -> tuple[str | None, dict[str, Any]]:
    """BC on as many teacher trajectories as SCoRe's teacher budget buys (SCoRe's budget = BC-init
    trajectories + MPS reviews and corrections). It takes the baseline's trajectories in task order,
    then, when SCoRe spent more than the whole baseline, has the teacher solve further tasks of the
    same training streams until the budget is spent."""
    from score_distill.stages.bc import rejection_sample, solve_resumable

    d = pipe.stage_dir("bc_equal_budget")
    done = d / "stage.json"
    if done.exists():
        st = json.loads(done.read_text())
        return st.get("model"), st
    bc_init = read_jsonl(pipe.stage_dir("bc_init") / "teacher_trajectories.jsonl", Trajectory)
    mps = json.loads((pipe.stage_dir("mps") / "stats.json").read_text())
    budget = sum(_tokens(t) for t in bc_init) + mps["teacher_tokens"]
    pool = pipe.baseline_teacher_trajectories()  # the baseline's, or solved now where it was not trained
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
        more = _more_train_tasks(pipe, int((budget - spent) / per * 1.25) + 4)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(0, len(more), 8):  # resumable: solved trajectories are reused on a rerun
            solved = solve_resumable(pipe.teacher, more[: i + 8], d / "extra_teacher_trajectories.jsonl")
            before = len(chosen)
            full = not take(solved[i:])
            n_extra += len(chosen) - before
            if full:
                break
    kept = rejection_sample(chosen)
    info = {"budget_tokens": budget, "spent_tokens": spent, "trajectories": len(chosen), "retained": len(kept),
            "beyond_the_baseline": n_extra}
    t0 = time.perf_counter()
    res = pipe.train_sft("bc_equal_budget", pipe.cfg.student.model, kept, pipe.cfg.bc_baseline.sft)
    info = {"status": "done", **res, **info, "seconds": round(time.perf_counter() - t0, 2)}
    write_json(done, info)
    return res.get("model"), info


def train_ablation(pipe: Pipeline, name: str, flags: dict[str, Any]) -> str | None:
    from score_distill.rl.items import load_items
    from score_distill.stages.rl import run_rl_stage

    d = pipe.stage_dir(name)
    done = d / "stage.json"
    if done.exists():
        return json.loads(done.read_text()).get("model")
    items_path = pipe.stage_dir("score_rl") / "items.jsonl"
    base = pipe.model_of("score_sft") or pipe.cfg.student.model
    items = load_items(items_path) if items_path.exists() else []
    if not items:
        write_json(done, {"status": "done", "model": base, "trained": False})
        return base
    cfg = pipe.cfg.rl.model_copy(update=flags)
    t0 = time.perf_counter()
    model = run_rl_stage(pipe.resolve_model(base), items, cfg, d, pipe.tools_for, None, pool=pipe.pool)
    write_json(done, {"status": "done", "model": str(model), "seconds": time.perf_counter() - t0})
    return str(model)


def evaluate(pipe: Pipeline, policies: list[str], extra: dict[str, str],
             where: tuple[dict[str, list[Task]] | None, Path]) -> None:
    """Evaluate ``policies`` now (each as soon as it is trained, so an interrupted or partial study
    has figures) on the held-out set ``where`` (``held_out_set``); the time of each policy's evaluation
    is kept in its ``study_eval.json``."""
    suites, eval_dir = where
    times_p = eval_dir / "study_eval.json"
    times = json.loads(times_p.read_text()) if times_p.exists() else {}
    todo = [p for p in policies if p not in times]
    if not todo:
        return
    pipe.extra_policies = extra
    for policy in todo:
        pipe.cfg.eval.policies = [policy]
        t0 = time.perf_counter()
        pipe.stage_eval(suites, eval_dir if suites is not None else None)
        times[policy] = round(time.perf_counter() - t0, 2)
        write_json(times_p, times)


# The last pipeline stage each method needs: the one that makes it, or, for the study's own policies, the
# one they build on (equal-budget BC: MPS's teacher budget; the ablations: the items the SCoRe-RL stage writes).
NEEDS_STAGE = {p: stage for stage, policies in STAGE_POLICIES for p in policies} | {
    "bc_equal_budget": "mps", **dict.fromkeys(ABLATIONS, "score_rl")}


def run_one(preset: str, h: int, seed: int, out: Path, overrides: list[str],
            config_file: str | None = None, report_only: bool = False,
            eval_n: int | None = None, eval_seed: int | None = None,
            methods: list[str] | None = None) -> dict[str, Any] | None:
    """Train and evaluate everything for one (H, seed); with ``report_only``, only read what is on disk
    (None when nothing of this run is evaluated yet). ``eval_n``/``eval_seed``: see ``held_out_set``.
    ``methods``: evaluate only these, and train only what they need (the rest of a run measured in another
    session comes in with ``--merge``); the stages they build on are trained all the same."""
    run_dir = out / f"H{h}-seed{seed}"
    cfg = load_config(config_file, [*overrides, f"tasks.horizons=[{h}]", f"seed={seed}",
                             f"tasks.train_seed={1000 + 7 * seed}", f"agent.max_steps={max(h + 3, 6)}",
                             f"rl.max_steps={max(h + 3, 6)}"], preset=preset)
    cfg.name = f"study-H{h}-s{seed}"
    pipe = Pipeline(cfg, run_dir, preset=preset)
    t0 = time.perf_counter()
    eval_dir = held_out_dir(pipe, eval_n, eval_seed)
    results_p = eval_dir / "results.json"
    if report_only:
        if not results_p.exists():
            return None
    else:
        # The pipeline's policies its configuration evaluates, and the study's own.
        wanted = set(methods or METHODS) & {*pipe.cfg.eval.policies, "bc_equal_budget", *ABLATIONS}
        if "bc_baseline" not in wanted:
            # Changes no other policy: only equal-budget BC reads the baseline, and only its teacher trajectories.
            pipe.cfg.bc_baseline.enabled = False
        last = max(STAGES.index(NEEDS_STAGE[m]) for m in wanted) if wanted else 0
        extra: dict[str, str] = {}
        try:
            # Each policy is evaluated right after the stage that makes it: a study cut off mid-way
            # still has figures for what it trained.
            pipe.run(to_stage="tasks")
            where = held_out_set(pipe, eval_n, eval_seed)
            for stage, policies in STAGE_POLICIES:
                if STAGES.index(stage) > last:
                    break
                pipe.run(to_stage=stage)
                evaluate(pipe, [p for p in policies if p in wanted], extra, where)
            # Equal-budget BC before the ablations: two of the four targets need it, none needs an ablation.
            m, _ = train_equal_budget_bc(pipe) if "bc_equal_budget" in wanted else (None, None)
            if m:
                extra["bc_equal_budget"] = m
                evaluate(pipe, ["bc_equal_budget"], extra, where)
            for name, flags in ABLATIONS.items():
                if name not in wanted:
                    continue
                m = train_ablation(pipe, name, flags)
                if m:
                    extra[name] = m
                    evaluate(pipe, [name], extra, where)
        finally:
            pipe.close()
    results, episodes = rescore(eval_dir, json.loads(results_p.read_text()))
    summary = pipe.summary()
    stages = {s: v.get("seconds") for s, v in summary["stages"].items() if v.get("seconds")}
    for name in (*ABLATIONS, "bc_equal_budget"):
        if (st := pipe.stage_state(name) or {}).get("seconds"):
            stages[name] = st["seconds"]
    times_p = eval_dir / "study_eval.json"
    times = json.loads(times_p.read_text()) if times_p.exists() else {}
    if times:
        stages["eval"] = round(sum(times.values()), 1)
    budget = {k: v for k, v in (pipe.stage_state("bc_equal_budget") or {}).items()
              if k in ("budget_tokens", "spent_tokens", "trajectories", "retained", "beyond_the_baseline")}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    n_held_out = {suite: m.get("n_tasks") for suite, m in next(iter(results.values()), {}).items()}
    return {"h": h, "seed": seed, "setup": setup(preset, config_file, overrides, eval_n, eval_seed),
            "held_out": {"dir": eval_dir.name, "n_tasks": n_held_out},
            "recorded": {k: manifest.get(k) for k in ("created", "command", "git_revision", "machine", "history")},
            "results": results, "episodes": episodes, "teacher_tokens": summary["teacher_tokens"],
            "mps": summary["mps"], "equal_budget": budget, "stage_seconds": stages, "eval_seconds": times,
            "seconds": round(sum(stages.values()), 1), "session_seconds": round(time.perf_counter() - t0, 1)}


def setup(preset: str, config_file: str | None, overrides: list[str], eval_n: int | None = None,
          eval_seed: int | None = None) -> dict[str, Any]:
    """What makes two studies' runs comparable: the preset, the configuration file's text, the overrides and
    the held-out set (the per-run horizon and seed are the run's own keys)."""
    text = Path(config_file).read_bytes() if config_file else b""
    return {"preset": preset, "config": config_file, "config_sha256": hashlib.sha256(text).hexdigest()[:16],
            "overrides": list(overrides), "eval_n": eval_n, "eval_seed": eval_seed}


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


def paired(runs: list[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """H -> "a vs b" -> episodes where a scored higher than b, lower, the same, and the two-sided sign
    test's p-value, over every run of that H that kept its episodes (records of studies before they were
    kept have none). An episode is one held-out task under one sampling seed, the same for a and b."""
    from scipy.stats import binomtest

    out: dict[int, dict[str, dict[str, Any]]] = {}
    for h in sorted({r["h"] for r in runs}):
        for a, b in PAIRS:
            better = worse = same = used = 0
            for r in (r for r in runs if r["h"] == h):
                ea, eb = r.get("episodes", {}).get(a, {}), r.get("episodes", {}).get(b, {})
                pairs = [(sa[k], eb[suite][k]) for suite, sa in ea.items() if suite in eb
                         for k in sa if k in eb[suite]]
                used += bool(pairs)
                better += sum(x > y for x, y in pairs)
                worse += sum(x < y for x, y in pairs)
                same += sum(x == y for x, y in pairs)
            if used:
                n = better + worse
                out.setdefault(h, {})[f"{a} vs {b}"] = {
                    "better": better, "worse": worse, "same": same, "runs": used,
                    "p": binomtest(better, n).pvalue if n else 1.0}
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
    return {"success": table, "progress": progress, "cost": cost, "paired": paired(runs)}


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, ylabel, name in (("success", "success on held-out tasks", "success_vs_horizon.png"),
                              ("progress", "key steps right before the first error", "progress_vs_horizon.png")):
        _plot_vs_horizon(plt, agg[key], ylabel, out / f"{prefix}{name}")

    fig, ax = plt.subplots(figsize=(7, 4.5))
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
            if y is not None:
                xs.append(x)
                ys.append(y)
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
    print("\npaired on the same held-out episodes (a vs b: episodes a scored higher / lower / the same; two-sided "
          "sign test)")
    if not agg["paired"]:
        print("  none: no run has both methods of a pair evaluated with their episodes kept")
    for h, comparisons in agg["paired"].items():
        for name, c in comparisons.items():
            print(f"  H={h} {name:34s} {c['better']:>3d} / {c['worse']:>3d} / {c['same']:>3d}   p = {c['p']:.3f}"
                  f"   ({c['runs']} run{'s' if c['runs'] > 1 else ''})")
    print("\nteacher tokens per retained trajectory (estimated for the oracle teacher)")
    for h, v in agg["cost"].items():
        ratio = (f"MPS / BC {v['mps_over_bc']:.3f} ({v['ratio_runs']} run{'s' if v['ratio_runs'] > 1 else ''} with both)"
                 if v.get("mps_over_bc") is not None else "no ratio: no run has both figures")
        print(f"  H={h}: BC {v['bc_per_retained']}, MPS {v['mps_per_retained']}; {ratio}")
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--config", default=None, help="YAML merged over the preset (e.g. benchmarks/study_cpu.yaml)")
    ap.add_argument("--horizons", default="2,4,8")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--report-only", action="store_true",
                    help="train and decode nothing: aggregate the runs already evaluated under --out")
    ap.add_argument("--merge", action="append", default=[], metavar="STUDY_JSON",
                    help="also aggregate the runs of an earlier study.json of the same setup (another session or "
                         "machine); a run evaluated under --out takes precedence. Repeatable.")
    ap.add_argument("--eval-n", type=int, default=None, metavar="N",
                    help="evaluate on N held-out tasks per suite (of --eval-seed's stream) instead of the run's own "
                         "held-out set: a wider evaluation of the same trained policies, in RUN/eval-s<seed>-n<N>/, recorded in "
                         "OUT/eval-s<seed>-n<N>_study.json")
    ap.add_argument("--eval-seed", type=int, default=None, metavar="S",
                    help="task stream of --eval-n (default: the configuration's tasks.eval_seed); a stream nobody "
                         "tuned on re-tests every trained policy without retraining")
    ap.add_argument("--methods", default=None, metavar="M1,M2",
                    help=f"evaluate only these methods (of {','.join(METHODS)}) and train only what they need; "
                         "with --merge, the rest of the same (H, seed) comes from the earlier study.json")
    ap.add_argument("overrides", nargs="*", help="config overrides applied to every run, e.g. tasks.n_train=32")
    args = ap.parse_args(argv)
    if args.eval_seed is not None and args.eval_n is None:
        ap.error("--eval-seed needs --eval-n (how many tasks of that stream)")
    methods = args.methods.split(",") if args.methods else None
    if unknown := sorted(set(methods or []) - set(METHODS)):
        ap.error(f"--methods: unknown {', '.join(unknown)} (methods: {', '.join(METHODS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for h in [int(x) for x in args.horizons.split(",")]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            print(f"== H={h} seed={seed}", file=sys.stderr, flush=True)
            run = run_one(args.preset, h, seed, out, args.overrides, args.config, report_only=args.report_only,
                          eval_n=args.eval_n, eval_seed=args.eval_seed, methods=methods)
            if run is None:
                print(f"   H={h} seed={seed}: not evaluated yet, left out", file=sys.stderr)
                continue
            runs.append(run)
            write_json(out / f"{record_prefix(runs, args.eval_n)}study.json",
                       {"args": vars(args), "runs": runs, "aggregate": aggregate(runs)})
    runs = merge_runs(runs, args.merge, setup(args.preset, args.config, args.overrides, args.eval_n, args.eval_seed))
    if not runs:
        print("no evaluated runs", file=sys.stderr)
        return 1
    agg = aggregate(runs)
    prefix = record_prefix(runs, args.eval_n)
    write_json(out / f"{prefix}study.json", {"args": vars(args), "runs": runs, "aggregate": agg,
                                    "targets": [{"target": n, "met": ok, "detail": d} for n, ok, d in targets(agg)]})
    plots(agg, runs, out, prefix)
    print_report(agg, runs)
    print(f"\nwrote {out / f'{prefix}study.json'} and plots {prefix}success_vs_horizon.png, "
          f"{prefix}progress_vs_horizon.png, {prefix}success_vs_teacher_tokens.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
