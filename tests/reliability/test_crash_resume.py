"""kill -9 inside MPS and inside SFT, rerun the same command: the run completes with the records of an
uninterrupted run. The long loop (>= 20 trials over every stage) is benchmarks/crash_trials.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "crash_trials.py"


def _trials():
    spec = importlib.util.spec_from_file_location("crash_trials", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_records(tmp_path):
    ct = _trials()
    ref = tmp_path / "reference"
    assert ct.run_to_end(ref, ct.OVERRIDES, tmp_path / "ref.log") == 0, (tmp_path / "ref.log").read_text()[-3000:]
    seconds = {s: json.loads((ref / s / "stage.json").read_text())["seconds"] for s in ct.stages_run()}
    for stage, share in (("mps", 0.3), ("score_sft", 0.4)):
        run, log = tmp_path / stage, tmp_path / f"{stage}.log"
        # The delay is a share of the reference run's stage time; on a loaded machine a stage can run
        # faster than it did there and the kill land in the next stage: then start over, earlier.
        for attempt in range(4):
            kill = ct.kill_inside(run, ct.OVERRIDES, stage, share * seconds[stage] / 3**attempt, log)
            if kill["killed_in"] == stage:
                break
            shutil.rmtree(run, ignore_errors=True)
        assert kill["killed"] and kill["killed_in"] == stage, kill
        assert ct.run_to_end(run, ct.OVERRIDES, log) == 0, log.read_text()[-3000:]
        res = ct.compare(run, ref)
        assert res["ok"], res["problems"]
