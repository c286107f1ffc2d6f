"""Command-line entry for SFT, so ``accelerate launch`` can start it on several processes.

    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml -m score_distill.training.sft_entry \\
        --records train.jsonl --model MODEL_DIR --out OUT_DIR --config '{"epochs": 1}'

``--records``: a Trajectory JSONL file (or ``{"messages": [...]}`` lines); ``--config``: SFTConfig as a
JSON string or a path to a JSON file. The main process prints the TrainResult as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accelerate import PartialState
from pydantic import ValidationError

from score_distill.training.sft import SFTConfig, train_sft
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import DataError, read_jsonl


def load_records(path: str) -> list:
    raw = read_jsonl(path)
    if raw and "messages" in raw[0] and "task" not in raw[0]:
        return raw
    return read_jsonl(path, Trajectory)


def parse_config(text: str | None) -> SFTConfig:
    if not text:
        return SFTConfig()
    p = Path(text)
    src = p.read_text() if p.suffix == ".json" and p.exists() else text
    try:
        return SFTConfig.model_validate_json(src)
    except ValidationError as e:
        raise SystemExit(f"--config: {e}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m score_distill.training.sft_entry", description=__doc__.split("\n")[0])
    ap.add_argument("--records", required=True, help="training records (Trajectory JSONL)")
    ap.add_argument("--model", required=True, help="model folder or 'smollm2-135m'")
    ap.add_argument("--out", required=True, help="output folder (checkpoints, final model)")
    ap.add_argument("--config", default=None, help="SFTConfig as JSON text or a .json file")
    ap.add_argument("--eval-records", default=None)
    ap.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run")
    a = ap.parse_args(argv)
    cfg = parse_config(a.config)
    try:
        records = load_records(a.records)
        evals = load_records(a.eval_records) if a.eval_records else None
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = train_sft(a.model, records, cfg, a.out, resume=not a.no_resume, eval_records=evals)
    if PartialState().is_main_process:
        print(json.dumps(result.model_dump()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
