"""The ``score-distill`` command line.

    score-distill run [--preset default|tiny|paper] [--config FILE] [key=value ...] [--out DIR] [--from S] [--to S]
    score-distill compare [--preset ...] [--config FILE] --horizons 2,4 --seeds 0,1,2 [--eval-n 100] [--out DIR]
    score-distill eval --model PATH|NAME|--endpoint URL --model-name M [--suite math@H4 ...] [--benchmark aime24 ...]
    score-distill report RUN_DIR
    score-distill sandbox FILE.py
    score-distill tasks SUITE [--n 3] [--horizon 4] [--seed 0]
    score-distill config [--preset ...] [--config FILE] [key=value ...]
    score-distill doctor

User mistakes (bad config keys, missing files, unreachable endpoints) end with one clear line and a
non-zero exit code; they never print a traceback, and never destroy finished work.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", help="default (SmolLM2 on CPU), tiny (CI smoke), paper (GPUs)")
    p.add_argument("--config", help="YAML file merged over the preset")
    p.add_argument("overrides", nargs="*", help="key=value overrides with dotted keys, e.g. rl.group_size=4")


def _load(args: argparse.Namespace):
    from score_distill.config import load_config

    return load_config(args.config, args.overrides, preset=args.preset)


def cmd_run(args: argparse.Namespace) -> int:
    from score_distill.pipeline import run_pipeline

    cfg = _load(args)
    out = Path(args.out or Path("runs") / cfg.name)
    console.print(f"run directory: [bold]{escape(str(out))}[/] (the same command resumes an interrupted run)")
    from score_distill.utils import console as run_console

    run_console.configure(out, verbose=args.verbose)
    try:
        summary = run_pipeline(cfg, out, preset=args.preset, from_stage=args.from_stage, to_stage=args.to_stage)
    finally:
        run_console.reset()
    from score_distill.report.terminal import render_summary_table

    print(render_summary_table(summary, color=sys.stdout.isatty(), run_dir=out))
    report = out / "report.html"
    if report.exists():
        console.print(f"report: [bold]{escape(str(report))}[/]")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from score_distill.compare.study import run_study

    return run_study(args)


def cmd_config(args: argparse.Namespace) -> int:
    from score_distill.config import dump_config

    if args.reference:
        from score_distill.config_reference import reference_markdown

        print(reference_markdown())
        return 0
    print(dump_config(_load(args)), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from score_distill.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "manifest.json").exists() and not (run_dir / "summary.json").exists():
        console.print(f"[red]error:[/] {escape(str(run_dir))}: not a score-distill run directory (no manifest.json)",
                      soft_wrap=True)
        return EXIT_USER_ERROR
    if not (run_dir / "summary.json").exists():
        import json

        from score_distill.config import RunConfig
        from score_distill.pipeline import RunContext
        from score_distill.pipeline.summary import summary
        from score_distill.utils.jsonl import write_json

        manifest = json.loads((run_dir / "manifest.json").read_text())
        cfg = RunConfig.model_validate(manifest["config"])
        write_json(run_dir / "summary.json", summary(RunContext.open(cfg, run_dir, manifest.get("preset", "?"))))
    path = write_report(run_dir)
    console.print(f"report: [bold]{escape(str(path))}[/]")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from score_distill.sandbox.cli import run_file_cli

    if not Path(args.file).exists():
        console.print(f"[red]error:[/] {escape(args.file)}: file not found", soft_wrap=True)
        return EXIT_USER_ERROR
    return run_file_cli(args.file)


def cmd_tasks(args: argparse.Namespace) -> int:
    from score_distill.tasks.registry import preview_tasks

    print(preview_tasks(args.suite, args.n, args.horizon, args.seed, args.split))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from score_distill.doctor import doctor

    return doctor(_load(args) if (args.config or args.overrides) else None)


def cmd_eval(args: argparse.Namespace) -> int:
    from score_distill.evaluate_cli import evaluate_cli

    return evaluate_cli(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="score-distill", description="Distil a large LLM agent into a small one (SCoRe).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the whole pipeline (resumable)")
    _add_config_args(r)
    r.add_argument("--out", help="run directory (default: runs/<name>)")
    r.add_argument("--from", dest="from_stage", help="rerun from this stage (its old outputs move to .trash/)")
    r.add_argument("--to", dest="to_stage", help="stop after this stage")
    r.add_argument("--verbose", action="store_true", help="also show library logs, warnings and trainer logs "
                   "(always in RUN/run.log)")
    r.set_defaults(fn=cmd_run)

    cmp = sub.add_parser("compare", help="is SCoRe worth it on my tasks? SCoRe against BC at equal teacher budget and "
                         "equal training compute, over seeds and horizons, with task-level statistics")
    from score_distill.compare.study import add_arguments

    add_arguments(cmp)
    cmp.set_defaults(fn=cmd_compare, out="runs/compare")

    c = sub.add_parser("config", help="print the resolved configuration")
    _add_config_args(c)
    c.add_argument("--reference", action="store_true", help="print the Markdown reference of every key")
    c.set_defaults(fn=cmd_config)

    e = sub.add_parser("eval", help="evaluate a policy on built-in suites and paper benchmarks")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="local model folder, checkpoint, 'smollm2-135m', 'tiny' or a hub id")
    src.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    e.add_argument("--model-name", help="served model name (with --endpoint)")
    e.add_argument("--api-key-env", default="OPENAI_API_KEY")
    from score_distill.evaluate_cli import add_endpoint_args, add_judge_args

    add_endpoint_args(e)
    add_judge_args(e)
    e.add_argument("--suite", action="append", default=[], help="built-in suite as NAME@H<horizon>, e.g. math@H4")
    e.add_argument("--benchmark", action="append", default=[],
                   help="paper benchmark name (aime24, hqa...) or JSONL path")
    e.add_argument("--n", type=int, default=20, help="tasks per built-in suite / cap per benchmark")
    e.add_argument("--seeds", default="0,1,2", help="comma-separated sampling seeds")
    e.add_argument("--eval-seed", type=int, default=2000, help="task-generation seed of the built-in suites")
    e.add_argument("--max-steps", type=int, default=8)
    e.add_argument("--max-new-tokens", type=int, default=512)
    e.add_argument("--batch-size", type=int, default=32,
                   help="episodes decoding at once with --model (the engine's rows; more is faster, uses more memory)")
    e.add_argument("--draft", type=int, default=0, metavar="N",
                   help="speculative decoding with --model: verify up to N prompt-lookup ids per episode and step "
                        "(same greedy tokens and sampling distribution, other random draws); 0: off")
    e.add_argument("--seed-by-policy", action="store_true",
                   help="put the policy's name in each episode's sampling seed (independent draws); by default "
                        "every policy draws from the same seeds (eval.common_seeds), as the pipeline evaluates")
    e.add_argument("--out", default="runs/eval", help="where trajectories and results.json go")
    e.set_defaults(fn=cmd_eval)

    rp = sub.add_parser("report", help="write RUN_DIR/report.html")
    rp.add_argument("run_dir")
    rp.set_defaults(fn=cmd_report)

    s = sub.add_parser("sandbox", help="run a Python file in the sandbox exactly as an agent step")
    s.add_argument("file")
    s.set_defaults(fn=cmd_sandbox)

    t = sub.add_parser("tasks", help="print generated tasks of a built-in suite")
    t.add_argument("suite", choices=["math", "search"])
    t.add_argument("--n", type=int, default=3)
    t.add_argument("--horizon", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--split", choices=["train", "eval"], default="train")
    t.set_defaults(fn=cmd_tasks)

    d = sub.add_parser("doctor", help="what this machine guarantees and which backends work")
    d.add_argument("--config")
    d.add_argument("--preset", default="default")
    d.add_argument("overrides", nargs="*")
    d.set_defaults(fn=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    from score_distill.user_errors import USER_ERRORS, describe

    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from score_distill.utils.progress import progress_enabled

    if not progress_enabled():
        # Into a log file, Hugging Face's per-load bars ("Loading weights", "Writing model shards") are
        # noise; read by huggingface_hub when first imported, so set before any model code runs.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted[/]: everything finished so far is saved; run the same command to resume.")
        return EXIT_INTERRUPTED
    except USER_ERRORS as e:
        console.print(f"[red]error:[/] {escape(describe(e))}", soft_wrap=True, highlight=False)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
