"""``python -m score_distill.report RUN_DIR``: the same as ``score-distill report RUN_DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from score_distill.report.page import write_report
from score_distill.report.run_files import SUMMARY_FILE, read_summary, with_steps
from score_distill.report.terminal import render_summary_table
from score_distill.utils.jsonl import DataError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="score-distill report", description="Write RUN_DIR/report.html.")
    ap.add_argument("run_dir", type=Path)
    args = ap.parse_args(argv)
    try:
        out = write_report(args.run_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = args.run_dir / SUMMARY_FILE
    if summary.exists():
        try:
            print(render_summary_table(with_steps(read_summary(summary), args.run_dir), color=sys.stdout.isatty()))
        except DataError as e:  # already shown as an error box in the report
            print(f"warning: {e}", file=sys.stderr)
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
