"""How many teacher trajectories does the student need? Behaviour cloning at growing data sizes.

    python benchmarks/data_scaling.py --config benchmarks/study_cpu.yaml --horizon 2 --n-train 24,96,192 \
        --out runs/data-scaling          # resumable: rerun the same command after an interruption
    python benchmarks/data_scaling.py ... --report-only   # table and plot from what is on disk

For each size N it has the teacher solve N training tasks at horizon H, fine-tunes the student on the
correct trajectories with the configuration's ``bc_baseline.sft`` (the study's BC baseline, same epochs,
so more data means more steps), and evaluates it like the pipeline does. It answers the question the
study leaves when every student scores 0: is the student too small, or the data too little?

It evaluates on its own held-out stream (``--eval-seed``, default 9000), not the study's (the
configuration's ``tasks.eval_seed``): sizes chosen from this curve must not be chosen on the seeds the
study reports. Prints a table, writes ``data_scaling.json`` and ``data_scaling.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from score_distill.config import load_config
from score_distill.pipeline import Pipeline
from score_distill.pipeline.bc_arms import sft_steps
from score_distill.utils.jsonl import write_json


def run_size(args: argparse.Namespace, n: int, epochs: float | None) -> dict[str, Any] | None:
    """Teacher trajectories, BC and evaluation for one data size and epoch count (None: the
    configuration's): the pipeline's tasks, bc_baseline and eval stages, each skipped when done."""
    h = args.horizon
    if epochs == args.default_epochs:
        epochs = None  # the configuration's own: run folder H<h>-N<n>, no suffix
    over = [*args.overrides, f"tasks.horizons=[{h}]", f"tasks.n_train={n}", f"tasks.n_eval={args.n_eval}",
            f"tasks.eval_seed={args.eval_seed}", f"agent.max_steps={max(h + 3, 6)}", "eval.policies=[bc_baseline]"]
    tag = f"H{h}-N{n}" + (f"-E{epochs:g}" if epochs is not None else "")
    over.append(f"name=data-scaling-{tag}")
    if epochs is not None:
        over.append(f"bc_baseline.sft.epochs={epochs}")
    cfg = load_config(args.config, over, preset=args.preset)
    pipe = Pipeline(cfg, args.out / tag, preset=args.preset)
    results_p = pipe.stage_dir("eval") / "results.json"
    if args.report_only and not results_p.exists():
        return None
    if not args.report_only:
        pipe.run(only=["tasks", "bc_baseline", "eval"])  # the BC baseline alone: no BC init, MPS or SCoRe
    results = json.loads(results_p.read_text())
    st = pipe.stage_state("bc_baseline") or {}
    row: dict[str, Any] = {"h": h, "n_train": n, "epochs": cfg.bc_baseline.sft.epochs,
                           "steps": sft_steps(pipe.ctx, "bc_baseline"),
                           "retained": st.get("n_records"), "teacher_tokens": _tokens(st.get("teacher") or {}),
                           "train_seconds": st.get("seconds"), "final_loss": st.get("final_loss"),
                           "eval_seconds": (pipe.stage_state("eval") or {}).get("seconds"),
                           "compute": st.get("compute")}
    for suite, m in results["bc_baseline"].items():
        row[suite] = {k: m.get(k) for k in ("success_mean", "progress", "format_error_rate", "finished_rate",
                                            "mean_steps", "n_tasks")}
    return row


def _tokens(cost: dict[str, Any]) -> int | None:
    if "prompt_tokens" not in cost:
        return None
    return (cost["prompt_tokens"] or 0) + (cost["completion_tokens"] or 0)


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _suites(row: dict[str, Any]) -> list[str]:
    return [k for k, v in row.items() if isinstance(v, dict) and k != "compute"]


def report(rows: list[dict[str, Any]], out: Path) -> None:
    print(f"\n{'N':>5} {'epochs':>6} {'steps':>5} {'teacher tok':>11} {'train s':>8} {'loss':>6}  suite      "
          f"{'success':>7} {'progress':>8} {'fmt err':>7} {'finished':>8}")
    for r in rows:
        for suite in _suites(r):
            m = r[suite]
            print(f"{r['n_train']:>5} {r['epochs']:>6g} {_fmt(r['steps'], 'd'):>5} "
                  f"{_fmt(r['teacher_tokens'], ',d'):>11} {_fmt(r['train_seconds'], '.0f'):>8} "
                  f"{_fmt(r['final_loss'], '.3f'):>6}  {suite:<10} {m['success_mean']:>7.0%} "
                  f"{_fmt(m['progress'], '.0%'):>8} {m['format_error_rate']:>7.2f} {m['finished_rate']:>8.0%}")
    write_json(out / "data_scaling.json", {"rows": rows})
    import matplotlib  # lazy: the headless backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Success against optimizer steps, one line per data size: separates "more data" from "longer training".
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    suites = sorted({s for r in rows for s in _suites(r)})
    for ax, key, title in ((axes[0], "success_mean", "success"), (axes[1], "progress", "key-step progress")):
        for suite in suites:
            for n in sorted({r["n_train"] for r in rows}):
                pts = sorted((r["steps"] or 0, r[suite].get(key) or 0.0, r["epochs"])
                             for r in rows if r["n_train"] == n and suite in r)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{suite}, N={n}")
                for x, y, e in pts:
                    ax.annotate(f"{e:g} ep", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set_xlabel("optimizer steps (batch of the config)")
        ax.set_title(f"BC on N teacher trajectories: {title}")
        ax.set_ylim(-0.05, 1.05)
    axes[0].set_ylabel("rate on held-out tasks")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "data_scaling.png", dpi=120)
    print(f"\nwrote {out / 'data_scaling.json'} and {out / 'data_scaling.png'}")


def _list(text: str, kind: type) -> list:
    return list(dict.fromkeys(kind(x) for x in text.split(",") if x.strip()))  # run in the order given


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--config")
    p.add_argument("--horizon", type=int, default=2)
    p.add_argument("--n-train", default="24,96,192", help="comma-separated training tasks per suite, run in this order")
    p.add_argument("--epochs", help="comma-separated epoch counts (default: the configuration's bc_baseline.sft)")
    p.add_argument("--n-eval", type=int, default=10)
    p.add_argument("--eval-seed", type=int, default=9000,
                   help="task-generation seed of the held-out tasks (not the study's)")
    p.add_argument("--allow-study-eval-seed", action="store_true",
                   help="allow --eval-seed to equal the configuration's tasks.eval_seed")
    p.add_argument("--out", type=Path, default=Path("runs/data-scaling"))
    p.add_argument("--report-only", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value configuration overrides")
    args = p.parse_args(argv)
    sizes = _list(args.n_train, int)
    epochs = _list(args.epochs, float) if args.epochs else [None]
    base = load_config(args.config, args.overrides, preset=args.preset)
    study_seed, args.default_epochs = base.tasks.eval_seed, base.bc_baseline.sft.epochs
    if args.eval_seed == study_seed and not args.allow_study_eval_seed:
        p.error(f"--eval-seed {args.eval_seed} is the configuration's tasks.eval_seed, the study's held-out "
                "stream: choosing data sizes on it would tune on the evaluation seeds "
                "(pass --allow-study-eval-seed to do it anyway)")
    if args.epochs and base.bc_baseline.sft.max_steps > 0:
        p.error(f"--epochs has no effect: the configuration sets bc_baseline.sft.max_steps="
                f"{base.bc_baseline.sft.max_steps}, which overrides epochs")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [r for e in epochs for n in sizes if (r := run_size(args, n, e)) is not None]
    if not rows:
        print("nothing evaluated yet", file=sys.stderr)
        return 1
    report(sorted(rows, key=lambda r: (r["n_train"], r["epochs"])), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
