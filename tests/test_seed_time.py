"""benchmarks/seed_time.py sums a run's stage times from its records, resumed RL and replaced stages included."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from seed_time import parse_replace, plot, seed_time  # noqa: E402


def _stage(run: Path, name: str, **info) -> None:
    (run / name).mkdir(parents=True, exist_ok=True)
    (run / name / "stage.json").write_text(json.dumps({"status": "done", **info}))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    r = tmp_path / "H8-seed0"
    _stage(r, "tasks", seconds=0.1)
    _stage(r, "bc_init", seconds=800.0, peak_rss_gb=10.0)
    _stage(r, "mps", seconds=500.0, peak_rss_gb=8.7)  # resumed: its record counts only the last process
    _stage(r, "bc_baseline", seconds=0.0, skipped="disabled")
    # resumed at update 2 of 3: the record holds the last process's 130 s; the updates' own times sum to 230 s
    _stage(r, "score_rl", seconds=130.0, peak_rss_gb=12.5)
    log = [{"step": i, "rollout_seconds": 40.0, "update_seconds": u} for i, u in enumerate((20.0, 30.0, 60.0))]
    (r / "score_rl" / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    (r / "eval").mkdir()
    (r / "eval" / "eval_seconds.json").write_text(json.dumps({"teacher": 1.0, "bc_init": 99.0, "score_rl": None}))
    return r


def test_sums_stages_rl_updates_and_eval(run: Path):
    out = seed_time(run)
    st = out["stages"]
    assert st["score_rl"]["seconds"] == 230.0 and st["score_rl"]["recorded_seconds"] == 130.0
    assert st["eval"]["seconds"] == 100.0 and "score_rl" not in st["eval"]["per_policy"]
    assert "bc_baseline" not in st and "bc_baseline" in out["not_run"] and "score_sft" in out["not_run"]
    assert out["total_seconds"] == round(0.1 + 800 + 500 + 230 + 100, 1)
    assert out["peak_rss_gb"] == 12.5


def test_replace_keeps_the_reason_and_changes_the_total(run: Path):
    out = seed_time(run, replace=parse_replace(["mps=874,15.5:the stage alone on a copy"]))
    assert out["stages"]["mps"] == {"seconds": 874.0, "recorded_seconds": 500.0, "peak_rss_gb": 15.5,
                                    "recorded_peak_rss_gb": 8.7, "replaced_by": "the stage alone on a copy"}
    assert out["total_seconds"] == round(0.1 + 800 + 874 + 230 + 100, 1)
    assert out["peak_rss_gb"] == 15.5
    without_peak = seed_time(run, replace=parse_replace(["mps=874:alone"]))["stages"]["mps"]
    assert without_peak["peak_rss_gb"] is None and without_peak["recorded_peak_rss_gb"] == 8.7


@pytest.mark.parametrize("bad, says", [(["mps=874"], "reason"), (["mps=fast:x"], "STAGE=SECONDS"),
                                       (["mps=1,big:x"], "PEAK_GB"), (["nope=1:x"], "no stage named nope"),
                                       (["score_sft=1:x"], "did not run")])
def test_bad_replace_names_the_problem(run: Path, bad, says):
    with pytest.raises(SystemExit, match=says):
        seed_time(run, replace=parse_replace(bad))


def test_missing_evaluation_is_named(run: Path):
    (run / "eval" / "eval_seconds.json").unlink()
    with pytest.raises(SystemExit, match="eval_seconds.json: missing"):
        seed_time(run)


def test_plot_writes_a_png(run: Path, tmp_path: Path):
    png = tmp_path / "seed.png"
    plot(seed_time(run, replace=parse_replace(["mps=874:alone"])), png, 3.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_stage_records_is_named(tmp_path: Path):
    with pytest.raises(SystemExit, match="no stage records"):
        seed_time(tmp_path)
