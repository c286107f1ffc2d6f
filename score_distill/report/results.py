"""Render committed study records as Markdown: the page ``docs/results.md``.

    python -m score_distill.report.results docs/figures/*.json > docs/results.md

Reads the records of ``benchmarks/distillation_study.py`` (``study.json``: ``runs`` and ``aggregate``),
``benchmarks/data_scaling.py`` (``rows``) and ``benchmarks/mps_cost_vs_student.py`` (``students``), and writes
tables of what they hold, with a confidence interval over held-out tasks, the records' commands, revisions and
machines, and links to their plots. It states only what the figures are; reading them is left to the reader.
The output depends only on the records (and, for training compute, on the configuration files they name), so
``tests/test_results_page.py`` regenerates the page and compares.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMMAND = "python -m score_distill.report.results docs/figures/*.json > docs/results.md"
# The study's method names, in the order a reader meets them.
POLICIES = ["teacher", "student_init", "bc_init", "bc_baseline", "bc_equal_budget", "bc_continued", "score_sft",
            "score_rl", "rl_long_horizon", "rl_sparse_reward"]
PLOTS = [("success_vs_horizon", "success vs H"), ("progress_vs_horizon", "key-step progress vs H"),
         ("success_vs_teacher_tokens", "success vs teacher tokens")]


def wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a share ``p`` of ``n`` tasks. Written out because scipy's takes whole
    counts, and ``p`` here may be a mean of per-task shares (tasks averaged over seeds): each such share lies
    in [0, 1], so its variance over tasks is at most p(1-p) and the interval stays conservative."""
    if n <= 0:
        return (0.0, 1.0)
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def num(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 10 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else str(x)


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def clean_command(argv: list[str] | None) -> str | None:
    """A recorded command as a user would type it in the repository: the script from ``benchmarks/`` on, and
    absolute paths of the recording machine (``/tmp/…``, an earlier record's copy) shortened to their name."""
    if not argv:
        return None
    out = []
    for i, a in enumerate(argv):
        if i == 0 and "benchmarks/" in a:
            a = "python " + a[a.index("benchmarks/"):]
        elif a.startswith("/"):
            for root in ("runs/", "docs/", "benchmarks/"):
                if "/" + root in a:
                    a = a[a.index("/" + root) + 1:]
                    break
            else:
                a = f"<{Path(a).name}>"
        out.append(a)
    return " ".join(out)


def machine(m: dict[str, Any] | None) -> str | None:
    if not m:
        return None
    gpu = "GPU" if m.get("cuda") else "no GPU"
    return f"{m.get('cpus')} CPU cores, {gpu}, {m.get('memory_gb')} GB RAM, Python {m.get('python')}"


def provenance(commands: list[str | None], revisions: list[str | None], machines: list[str | None]) -> list[str]:
    def distinct(xs):
        return list(dict.fromkeys(x for x in xs if x))

    revs = distinct(r[:7] if r else None for r in revisions)
    missing = sum(r is None for r in revisions)
    rev = ", ".join(f"`{r}`" for r in revs) or "not recorded"
    if revs and missing:
        rev += f" ({missing} of the {len(revisions)} recorded commands have no revision)"
    out = [f"- Revisions: {rev}.", f"- Machines: {'; '.join(distinct(machines)) or 'not recorded'}."]
    cmds = distinct(commands)
    if cmds:
        out += ["- Commands, as recorded:", "", "```", *cmds, "```"]
    else:
        out.append("- Commands: not recorded.")
    return out


# ----- studies (benchmarks/distillation_study.py)

def _cell(runs: list[dict[str, Any]], policy: str, h: int) -> dict[str, Any] | None:
    """One policy at one horizon over the record's runs: mean success, per-seed figures, task count."""
    per_seed, prog, tasks, counts = {}, [], set(), []
    for r in runs:
        res = r["results"].get(policy)
        if r["h"] != h or not res or any("success_mean" not in m for m in res.values()):
            continue
        per_seed[r["seed"]] = statistics.fmean(m["success_mean"] for m in res.values())
        if all("progress" in m for m in res.values()):
            prog.append(statistics.fmean(m["progress"] for m in res.values()))
        counts.append(sum(m.get("n_tasks") or 0 for m in res.values()))
        eps = (r.get("episodes") or {}).get(policy) or {}
        tasks |= {(suite, k.split("/", 1)[-1]) for suite, by in eps.items() for k in by}
    if not per_seed:
        return None
    # Every run of a record evaluates the same held-out tasks (the evaluation stream does not depend on the
    # training seed); the episodes, where kept, say which.
    n = len(tasks) or max(counts)
    p = statistics.fmean(per_seed.values())
    return {"p": p, "n": n, "seeds": per_seed, "progress": statistics.fmean(prog) if prog else None,
            "ci": wilson(p, n)}


def _config_text(path: str, sha16: str | None) -> bytes | None:
    """The text of the configuration file a record hashed: the file in this tree, or, once it has changed, the
    version in the repository's history with that hash (None when neither is at hand)."""
    def ok(b: bytes) -> bool:
        return hashlib.sha256(b).hexdigest()[:16] == sha16

    if (REPO / path).is_file() and ok(text := (REPO / path).read_bytes()):
        return text
    try:
        revs = subprocess.run(["git", "-C", str(REPO), "log", "--format=%H", "-n", "100", "--", path],
                              capture_output=True, text=True, check=True).stdout.split()
        for rev in revs:
            old = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True).stdout
            if ok(old):
                return old
    except (OSError, subprocess.CalledProcessError):
        pass
    return None


def _config_steps(setup: dict[str, Any]) -> dict[str, int] | None:
    """The SFT stages' optimizer steps from the configuration file a record names and hashed, if every SFT stage
    sets ``max_steps`` (otherwise the number of steps depends on the data)."""
    text = _config_text(setup["config"], setup.get("config_sha256")) if setup.get("config") else None
    if text is None:
        return None
    cfg = yaml.safe_load(text) or {}
    for o in setup.get("overrides") or []:
        key, _, val = o.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(val)
    steps = {s: ((cfg.get(s) or {}).get("sft") or {}).get("max_steps") for s in ("bc", "bc_baseline", "score_sft")}
    return steps if all(isinstance(v, int) for v in steps.values()) else None


def _compute_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Training compute per policy: as recorded (``runs[*].compute``), else the SFT steps the configuration
    fixes, and whether SCoRe and the BC baselines got the same."""
    recorded = [(r["h"], r["seed"], p, c) for r in runs for p, c in sorted((r.get("compute") or {}).items())]
    if recorded:
        keys = list(dict.fromkeys(k for *_, c in recorded for k in c))
        return ["Training compute per policy, as recorded:", "",
                *table(["H", "seed", "policy", *keys], [[h, s, p, *(num(c.get(k, "-")) for k in keys)]
                                                       for h, s, p, c in recorded]), ""]
    setups = [r.get("setup") or {} for r in runs]
    steps = _config_steps(setups[0]) if setups and all(s == setups[0] for s in setups) else None
    if not steps:
        return ["Training compute is not recorded per policy in this record.", ""]
    b, base, s = steps["bc"], steps["bc_baseline"], steps["score_sft"]
    line = (f"Training compute, from the configuration file the record names and hashed (not recorded per run): "
            f"the BC baseline and equal-budget BC train {base} optimizer steps from "
            f"the untrained student; BC init trains {b}; SCoRe-SFT continues from BC init for {s} more ({b + s} in "
            f"all); SCoRe-RL and the RL ablations add GRPO updates on top of SCoRe-SFT.")
    policies = {p for r in runs for p in r["results"]}
    if b + s > base and policies & {"score_sft", "score_rl"} and policies & {"bc_baseline", "bc_equal_budget"}:
        line += (" So in this record SCoRe and the BC baselines are not compute-matched: SCoRe's policies had "
                 f"{b + s} SFT steps plus RL against the baselines' {base}.")
    return [line, ""]


def _comparisons(rec: dict[str, Any]) -> list[str]:
    out: list[str] = []
    comps = rec.get("comparisons") or []
    if comps:
        rows = []
        for c in comps:
            ci = c.get("diff_ci95")
            rows.append([c.get("horizon"), f"{c.get('a')} vs {c.get('b')}", c.get("unit"), c.get("n_tasks"),
                         c.get("runs", "-"), c.get("better"), c.get("worse"), c.get("same"),
                         "-" if c.get("p_value") is None else f"{c['p_value']:.3g}",
                         f"[{100 * ci[0]:+.0f}, {100 * ci[1]:+.0f}] points" if ci else "-"])
        out += ["Paired comparisons, as recorded (over the training seeds that trained both policies; better / "
                "worse / same counted per unit; p: the record's test; difference in success with its 95% "
                "interval):", "",
                *table(["H", "pair", "unit", "tasks", "seeds", "better", "worse", "same", "p", "difference, 95% CI"],
                       rows),
                ""]
    paired = (rec.get("aggregate") or {}).get("paired") or {}
    rows = [[h, pair, v["better"], v["worse"], v["same"], v["runs"], f"{v['p']:.3g}"]
            for h, by in sorted(paired.items(), key=lambda kv: int(kv[0])) for pair, v in by.items()]
    if rows:
        out += ["Paired episode by episode (the same held-out task under the same sampling seed, pooled over the "
                "runs that kept their episodes; p: two-sided sign test on the episodes that differ). Each task "
                "counts once per training seed here, so the episodes are not independent and p is too small: "
                "this record predates the task-level test (one unit per distinct task, as `score-distill "
                "compare` records now), and its p-values support no claim:", "",
                *table(["H", "pair", "better", "worse", "same", "runs", "p (episodes, over-counted)"], rows), ""]
    return out


def _matched_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The compute-matched arms (``runs[*].matched``) and the policies whose episodes one run took from another."""
    rows = [[r["h"], r["seed"], arm, m.get("steps"), "yes" if m.get("same_batch") else "no",
             "yes" if m.get("same_max_length") else "no"]
            for r in runs for arm, m in sorted((r.get("matched") or {}).items())]
    out: list[str] = []
    if rows:
        out += ["Compute-matched arms: the SFT optimizer steps each was given (BC init + SCoRe-SFT for the BC baseline "
                "and equal-budget BC, SCoRe-SFT's for BC continued, which starts from BC init's model), and whether "
                "its batch and sequence budget are SCoRe-SFT's. SCoRe-RL's RL updates are matched by no BC arm:", "",
                *table(["H", "seed", "arm", "SFT steps", "same batch", "same max length"], rows), ""]
    reused = [f"{p} at (H={r['h']}, seed {r['seed']}) from `{src}`" for r in runs
              for p, src in sorted((r.get("reused_episodes") or {}).items())]
    if reused:
        out += ["Held-out episodes evaluated once and shared between training seeds (no stage trains these "
                "policies, and every episode is seeded by suite, sampling seed and task, and by the policy's name in "
                "records made before common seeds): "
                + "; ".join(reused) + ".", ""]
    return out


def _cost_lines(rec: dict[str, Any]) -> list[str]:
    cost = (rec.get("aggregate") or {}).get("cost") or {}
    rows = [[h, num(v.get("bc_per_retained")) if v.get("bc_per_retained") else "-",
             num(v.get("mps_per_retained")) if v.get("mps_per_retained") else "-",
             f"{v['mps_over_bc']:.2f}" if v.get("mps_over_bc") is not None else "-", v.get("ratio_runs", "-"),
             pct(v.get("solved_alone")), pct(v.get("break_even_solved_alone"))]
            for h, v in sorted(cost.items(), key=lambda kv: int(kv[0]))]
    if not rows:
        return []
    return ["Teacher tokens per retained trajectory (mean over runs): behaviour cloning's demonstrations against "
            "MPS's reviews and corrections; the share of MPS tasks the BC-init student solved alone, and the share "
            "at which MPS would spend a third of BC's tokens:", "",
            *table(["H", "BC", "MPS", "MPS / BC", "runs with both", "solved alone", "break-even share"], rows), ""]


def _merged_note(name: str, runs: list[dict[str, Any]]) -> str:
    """Which runs the record took, as they were, from an earlier record of the same setup (``--merge``); a record
    that grew a seed at a time names its own earlier version (in the repository's history)."""
    by: dict[str, list[str]] = {}
    for r in runs:
        if r.get("merged_from"):
            by.setdefault(r["merged_from"], []).append(f"({r['h']}, {r['seed']})")
    return "".join(f" Run{'s' if len(v) > 1 else ''} {', '.join(v)} as recorded in "
                   + ("an earlier version of this record" if Path(src).stem == name else f"`{src}`")
                   + " (`--merge`: a record of the same setup)." for src, v in by.items())


def render_study(name: str, rec: dict[str, Any]) -> list[str]:
    runs = sorted(rec["runs"], key=lambda r: (r["h"], r["seed"]))
    setup = next((r["setup"] for r in runs if r.get("setup")), None) or {}
    args = rec.get("args") or {}
    hs = sorted({r["h"] for r in runs})
    suites = sorted({s for r in runs for res in r["results"].values() for s in res})
    samp = max((len(m.get("per_seed") or [0]) for r in runs for res in r["results"].values() for m in res.values()),
               default=1)
    over = ", ".join(f"`{o}`" for o in setup.get("overrides", args.get("overrides") or [])) or "none"
    config = setup.get("config", args.get("config"))
    eval_n = setup.get("eval_n", args.get("eval_n"))
    eval_seed = setup.get("eval_seed", args.get("eval_seed"))
    where = (f"{eval_n} tasks per suite of evaluation stream {eval_seed} (`--eval-n {eval_n} --eval-seed "
             f"{eval_seed}`; tasks any policy trained on left out)" if eval_n
             else "the configuration's own held-out tasks")
    out = [f"## Study `{name}`", "",
           f"- Setup: preset `{setup.get('preset', args.get('preset'))}`, configuration "
           f"{'`' + config + '`' if config else 'none (the preset alone)'}, overrides {over}.",
           f"- Held-out set: {where}; suites {', '.join(suites)}; up to {samp} sampling "
           f"seed{'s' if samp > 1 else ''} per task.",
           "- Runs (H, training seed): " + ", ".join(f"({r['h']}, {r['seed']})" for r in runs) + "."
           + _merged_note(name, runs), ""]
    rows = []
    for h in hs:
        for pol in POLICIES:
            c = _cell(runs, pol, h)
            if c:
                seeds = ", ".join(f"s{s} {pct(v)}" for s, v in sorted(c["seeds"].items()))
                rows.append([pol, h, len(c["seeds"]), c["n"], pct(c["p"]),
                             f"{100 * c['ci'][0]:.0f}-{100 * c['ci'][1]:.0f}%", seeds, pct(c["progress"])])
    out += ["Success on held-out tasks: the mean over training seeds, a 95% Wilson interval over the held-out tasks "
            "(it covers the choice of tasks, not of training seed: the per-seed column shows that), and the share "
            "of key steps right before the first critical error (progress):", "",
            *table(["policy", "H", "seeds", "tasks", "success", "95% CI", "per training seed", "progress"], rows), ""]
    out += _comparisons(rec) + _compute_lines(runs) + _matched_lines(runs) + _cost_lines(rec)
    budget = [[r["h"], r["seed"], num(b.get("budget_tokens")), num(b.get("spent_tokens")), b.get("trajectories"),
               b.get("beyond_the_baseline")] for r in runs if (b := r.get("equal_budget"))]
    if budget:
        out += ["Equal-budget BC: SCoRe's teacher tokens (BC init and MPS), what BC spent of them, and on how many "
                "teacher trajectories (of which beyond the BC baseline's own):", "",
                *table(["H", "seed", "SCoRe's tokens", "spent", "trajectories", "beyond the baseline"], budget), ""]
    plots = [f"[{label}](figures/{name}_{key}.png)" for key, label in PLOTS
             if (REPO / "docs" / "figures" / f"{name}_{key}.png").is_file()]
    if plots:
        out += [f"Plots: {', '.join(plots)}.", ""]
    hist = [h for r in runs for h in ((r.get("recorded") or {}).get("history") or [(r.get("recorded") or {})])]
    out += provenance([clean_command(h.get("command")) for h in hist], [h.get("git_revision") for h in hist],
                      [machine((r.get("recorded") or {}).get("machine")) for r in runs])
    return out + [""]


# ----- the other benchmarks' records

def render_data_scaling(name: str, rec: dict[str, Any]) -> list[str]:
    rows = []
    for r in rec["rows"]:
        suites = [k for k, v in r.items() if isinstance(v, dict) and "success_mean" in v]
        for s in suites:
            m = r[s]
            lo, hi = wilson(m["success_mean"], m["n_tasks"])
            rows.append([s, r["n_train"], num(r["epochs"]), r["steps"], num(r["teacher_tokens"]), m["n_tasks"],
                         pct(m["success_mean"]), f"{100 * lo:.0f}-{100 * hi:.0f}%", pct(m.get("progress")),
                         num(m.get("format_error_rate"))])
    return [f"## Data scaling `{name}` (`benchmarks/data_scaling.py`)", "",
            "Behaviour cloning on N teacher trajectories for a number of optimizer steps, evaluated on held-out "
            "tasks (95% Wilson interval over the tasks):", "",
            *table(["suite", "N", "epochs", "steps", "teacher tokens", "tasks", "success", "95% CI", "progress",
                    "format errors"], rows), "",
            *([f"Plot: [success against optimizer steps](figures/{name}.png)."]
              if (REPO / "docs" / "figures" / f"{name}.png").is_file() else []),
            "", *provenance([clean_command(rec.get("command"))], [rec.get("git_revision")],
                            [machine(rec.get("machine"))]), ""]


def render_mps_cost(name: str, rec: dict[str, Any]) -> list[str]:
    rows = [[s["student"], s["n_tasks"], pct(s["solved_alone"]),
             " / ".join(str(v) for v in s["corrections_hist"].values()), num(s["tokens_per_helped_task"]),
             num(s["per_retained"]), f"{s['ratio_to_bc']:.3f}", f"{s['predicted_ratio']:.3f}"]
            for s in rec["students"]]
    where = (f"{rec['n_tasks']} tasks of training stream {rec['fresh_seed']}, which no policy trained on"
             if rec.get("fresh_seed") is not None else
             f"the first {rec['n']} MPS tasks of the run (training tasks: the BC baseline, which trains on a teacher "
             "demonstration of every training task, has seen them)")
    return [f"## MPS cost against the student `{name}` (`benchmarks/mps_cost_vs_student.py`)", "",
            f"The same MPS, mentoring different students of one finished run on {where}; BC's teacher tokens per "
            f"retained trajectory: {num(rec['bc_per_retained'])}. \"predicted\": the ratio computed from the "
            "share solved alone and BC init's cost per helped task.", "",
            *table(["student", "tasks", "solved alone", "corrections 0/1/2/3+", "tokens per helped task",
                    "per retained", "MPS / BC", "predicted"], rows), "",
            *([f"Plot: [MPS cost by student](figures/{name}.png)."]
              if (REPO / "docs" / "figures" / f"{name}.png").is_file() else []),
            "", *provenance([clean_command(rec.get("command"))], [rec.get("git_revision")],
                            [machine(rec.get("machine"))]), ""]


def _fair(rec: dict[str, Any]) -> bool:
    """A study whose SCoRe-vs-BC comparisons are compute-matched (every run records its matched arms) and paired
    over distinct held-out tasks."""
    runs, comps = rec.get("runs") or [], rec.get("comparisons") or []
    return bool(runs and comps) and all(r.get("matched") for r in runs) and all(c.get("unit") == "task"
                                                                             for c in comps)


def _finding(c: dict[str, Any]) -> str:
    """One comparison in words: who is ahead when the interval excludes zero and the test rejects at 5%; with
    few tasks the bootstrap interval and the sign test can disagree: not established."""
    lo, hi = c["diff_ci95"]
    d = 100 * c["diff_mean"]
    iv = f"[{100 * lo:+.0f}, {100 * hi:+.0f}] points, p = {c['p_value']:.2g}"
    a, b = c["a"], c["b"]
    excludes, rejects = lo > 0 or hi < 0, c["p_value"] < 0.05
    if excludes != rejects:
        why = ("the interval excludes zero, the sign test does not reject" if excludes else
               "the sign test rejects, the interval includes zero")
        return f"H={c['horizon']}: {a} vs {b}, not established: {why} ({d:+.0f}, {iv})"
    if excludes:
        ahead, behind = (a, b) if lo > 0 else (b, a)
        return f"H={c['horizon']}: {ahead} ahead of {behind} ({a} - {b} {d:+.0f}, {iv})"
    return f"H={c['horizon']}: {a} vs {b}, no difference detected ({d:+.0f}, {iv})"


def _order(policy: str) -> int:
    return POLICIES.index(policy) if policy in POLICIES else len(POLICIES)


def _fewer(runs: list[dict[str, Any]], h: int, seeds: list[int]) -> str:
    """The policies some training seeds at H did not train, so that no reader takes every row for every seed."""
    by: dict[tuple[int, ...], list[str]] = {}
    for pol in {p for r in runs if r["h"] == h for p in r.get("results") or {}}:
        if (c := _cell(runs, pol, h)) and (have := sorted(c["seeds"])) != sorted(seeds):
            by.setdefault(tuple(have), []).append(pol)
    return "".join(f" (seed{'s' if len(k) > 1 else ''} {', '.join(map(str, k))} only for "
                   f"{', '.join(sorted(v, key=_order))})" for k, v in sorted(by.items()))


def _reading_guide(studies: list[tuple[str, dict[str, Any]]]) -> list[str]:
    fair = [(n, r) for n, r in studies if _fair(r)]
    other = [n for n, r in studies if not _fair(r)]
    out: list[str] = []
    if fair:
        out += ["The comparisons of SCoRe against behaviour cloning with compute-matched controls, tested over "
                "distinct held-out tasks. A policy is *ahead* where the interval excludes zero and the sign test "
                "rejects at 5%; *no difference detected* where the interval includes zero; *not established* "
                "where the two disagree:", ""]
        for name, rec in fair:
            runs = sorted(rec["runs"], key=lambda r: (r["h"], r["seed"]))
            tasks = sorted({c["n_tasks"] for c in rec["comparisons"]})
            seeds = {h: [r["seed"] for r in runs if r["h"] == h] for h in sorted({r["h"] for r in runs})}
            one = all(c.get("runs", len(seeds[c["horizon"]])) == 1 for c in rec["comparisons"])
            out += [f"`{name}`: H={', '.join(map(str, seeds))}; training seeds "
                    + "; ".join(f"{', '.join(map(str, v))} at H={h}{_fewer(runs, h, v)}" for h, v in seeds.items())
                    + f"; {', '.join(map(str, tasks))} distinct held-out tasks. The mean difference in success, its "
                    "95% interval over tasks and the sign test's p"
                    + (" (one training seed: the interval covers the choice of tasks, not of training seed)"
                       if one else " (each task's success averaged over the training seeds; the interval resamples "
                       "tasks, so it covers the choice of tasks, not of training seed: the per-seed column below "
                       "shows how the seeds differ)") + ":", ""]
            # A pair some seeds did not train is compared over fewer seeds: said in the line, not left to the table.
            out += [f"- {_finding(c)[:-1]}; {c['runs']} training seed{'s' if c['runs'] > 1 else ''})"
                    if c.get("runs", len(seeds[c["horizon"]])) < len(seeds[c["horizon"]]) else f"- {_finding(c)}"
                    for c in rec["comparisons"]] + [""]
    if other:
        names = ", ".join(f"`{n}`" for n in other)
        out += [("The other studies (" + names + ")" if fair else
                 "No study here has compute-matched controls tested over distinct tasks yet. The studies (" + names
                 + ")") + " lack one or the other: their figures are what they measured, but their SCoRe-vs-BC "
                "gaps support no claim (SCoRe's policies trained more SFT steps than the BC arms, or episodes "
                "were counted as independent).", ""]
    return out


def render(paths: list[Path]) -> str:
    """The whole page for these record files (order-independent: studies first, then by name)."""
    recs = [(p.stem, json.loads(p.read_text())) for p in paths]
    kinds = {"runs": (0, render_study), "rows": (1, render_data_scaling), "students": (2, render_mps_cost)}
    parts = []
    for name, rec in recs:
        kind = next((v for k, v in kinds.items() if k in rec), None)
        if kind is None:
            raise ValueError(f"{name}.json: not a study, data-scaling or MPS-cost record (no 'runs', 'rows' or "
                             "'students' field)")
        parts.append((kind[0], name, kind[1], rec))
    parts.sort(key=lambda x: (x[0], x[1]))
    out = ["# Results", "",
           f"Generated from the records in `docs/figures/` by `{COMMAND}`; do not edit by hand. Each section is one "
           "record: what it evaluated, on how many held-out tasks, with the command, revision and machine that "
           "made it. Performance figures (throughput, latency, stage times) are in [benchmarks.md](benchmarks.md); "
           "the method in [method.md](method.md).", "",
           "Policies: `teacher` (the oracle teacher), `student_init` (the untrained student), `bc_init` (behaviour "
           "cloning on the teacher's share of the tasks), `bc_baseline` (behaviour cloning on every training task's "
           "teacher trajectory), `bc_equal_budget` (behaviour cloning on as many teacher trajectories as SCoRe's "
           "teacher budget buys), `bc_continued` (BC init's model trained on every training task's teacher "
           "trajectory for as many steps as SCoRe-SFT: same start, same steps, other data), `score_sft`, `score_rl`, "
           "and the RL ablations `rl_long_horizon` (rollouts from the task's start) and `rl_sparse_reward` (outcome "
           "reward only).", "",
           "Contents: " + ", ".join(f"`{name}`" for _, name, _, _ in parts) + ".", ""]
    out += _reading_guide([(name, rec) for kind, name, _, rec in parts if kind == 0])
    for _, name, fn, rec in parts:
        out += fn(name, rec)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: {COMMAND}", file=sys.stderr)
        return 2
    sys.stdout.write(render([Path(a) for a in args]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
