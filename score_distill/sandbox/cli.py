"""`score-distill sandbox FILE.py`: run a file as one agent step and print what the model would see."""

from __future__ import annotations

import sys
from pathlib import Path

from score_distill.sandbox.config import SandboxConfig
from score_distill.sandbox.sandbox import Sandbox


def run_file_cli(path: str, config: SandboxConfig | None = None) -> int:
    """Prints the observation (and the final answer). Returns 0 if the code ran without error, 1 otherwise."""
    p = Path(path)
    try:
        code = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"{path}: cannot read: {e}", file=sys.stderr)
        return 2
    with Sandbox(config or SandboxConfig()) as sb:
        res = sb.run(code)
    print(f"Observation: {res.observation}")
    if res.final_answer is not None:
        print(f"Final answer: {res.final_answer}")
    if res.error:
        print(f"Error: {res.error} ({res.seconds:.2f} s)", file=sys.stderr)
    return 0 if res.error is None else 1
