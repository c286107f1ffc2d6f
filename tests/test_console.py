"""The console of ``score-distill run``: one result line per stage on the terminal, everything else (trainer
dicts, library logs and warnings, Hugging Face bars) in ``RUN/run.log``; ``--verbose`` shows it all."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from score_distill.pipeline import STAGE_NAMES
from score_distill.utils import console

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCORE_DISTILL_PROGRESS": "0", "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "score_distill.cli", "run", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def test_tiny_run_prints_one_line_per_stage_and_logs_the_rest(tmp_path):
    out = tmp_path / "run"
    p = run_cli("--preset", "tiny", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("run directory:") and lines[-1] == f"report: {out / 'report.html'}"  # the CLI's
    lines = lines[1:-1]
    # Every stage that ran (the comparison's arms are off in this preset), in order.
    ran = [s for s in STAGE_NAMES if not json.loads((out / s / "stage.json").read_text()).get("skipped")]
    assert {"tasks", "bc_init", "mps", "split", "score_sft", "score_rl", "eval", "report"} <= set(ran)
    per_stage = {s: [ln for ln in lines if ln.startswith(f"{s}:")] for s in ran}
    assert all(len(v) == 1 for v in per_stage.values()), per_stage
    assert len(lines) == len(ran), lines  # nothing else: no warning, bar or dict
    assert "held-out" in per_stage["eval"][0] and "teacher tokens" in per_stage["mps"][0]
    assert "optimizer step" in per_stage["bc_init"][0] and "trained)" in per_stage["score_sft"][0]
    assert "{'" not in p.stdout and "Warning" not in p.stdout + p.stderr
    assert "Wilson interval" in p.stdout and "SFT steps" in p.stdout  # the final table
    log = (out / "run.log").read_text()
    assert "score_distill.trainer" in log and "'loss'" in log  # the Trainer's dicts, kept
    assert all(ln in log for ln in lines if ln.split(":")[0] in ran)  # result lines too

    # --verbose: the Trainer's dicts and library logs on the terminal as well
    v = run_cli("--preset", "tiny", "--out", str(out), "--from", "score_sft", "--to", "score_sft", "--verbose")
    assert v.returncode == 0, v.stderr[-3000:]
    assert "score_distill.trainer" in v.stderr and "'loss'" in v.stderr
    assert "score_sft: " in v.stderr

    # A stage the configuration switches off says where it went when silence would mislead (the BC baseline)
    off = run_cli("--preset", "tiny", "--out", str(out), "--from", "bc_baseline", "--to", "bc_baseline",
                  "bc_baseline.enabled=false")
    assert off.returncode == 0, off.stderr[-3000:]
    assert "bc_baseline: off in this run; `score-distill compare`" in off.stderr


def test_configure_routes_warnings_and_library_logs_to_the_run_log(tmp_path, capfd):
    import transformers.utils.logging as tlog

    try:
        path = console.configure(tmp_path, verbose=False)
        warnings.warn("a library warning", UserWarning, stacklevel=1)
        tlog.get_logger("transformers.modeling_utils").warning("a transformers warning")
        logging.getLogger("trl.trainer").warning("a trl warning")
        console.detail.print("stage chatter")
        console.detail.print("[yellow]a note for the user[/]")
        console.result("mps: 3 tasks")
    finally:
        console.reset()
    err = capfd.readouterr().err
    log = path.read_text()
    for msg in ("a library warning", "a transformers warning", "a trl warning", "stage chatter", "mps: 3 tasks"):
        assert msg in log
    for msg in ("a library warning", "a transformers warning", "a trl warning", "stage chatter"):
        assert msg not in err
    assert "a note for the user" in err and "mps: 3 tasks" in err

    try:
        console.configure(tmp_path, verbose=True)
        tlog.get_logger("transformers.modeling_utils").warning("shown when verbose")
        console.detail.print("chatter when verbose")
    finally:
        console.reset()
    err = capfd.readouterr().err
    assert "shown when verbose" in err and "chatter when verbose" in err
    assert "shown when verbose" in path.read_text()


def test_bars_of_one_stage_with_one_label_are_one_bar(monkeypatch):
    from score_distill.utils import progress

    monkeypatch.setenv("SCORE_DISTILL_PROGRESS", "1")
    progress.begin_stage("score_rl")
    try:
        for _update in range(3):
            with progress.progress_bar(4, "eval student") as bar:
                bar.advance(4)
        with progress.progress_bar(2, "other") as bar:
            bar.advance(1)
        p = progress._stage["progress"]
        by_label = {t.description: (t.completed, t.total) for t in p.tasks}
    finally:
        progress.end_stage()
    assert by_label == {"eval student": (12, 12), "other": (1, 2)}
    assert progress._stage["progress"] is None


def test_bar_has_an_eta_from_its_first_unit_even_when_units_take_minutes(monkeypatch):
    """An RL update can take minutes: the ETA must not need two units within rich's default 30 s window. Units
    done before a resume count in the bar but not in its speed."""
    from score_distill.utils import progress

    monkeypatch.setenv("SCORE_DISTILL_PROGRESS", "1")
    progress.begin_stage("score_rl")
    try:
        with progress.progress_bar(10, "score_rl RL updates", done=4) as bar:
            p = progress._stage["progress"]
            (task,) = p.tasks
            assert task.completed == 4 and task.time_remaining is None
            start = p.get_time()
            clock = iter(start + 120.0 * k for k in range(1, 100))  # one update every two minutes
            p.get_time = lambda: next(clock)
            bar.advance(1)
            assert task.speed == pytest.approx(1 / 120) and task.time_remaining == pytest.approx(5 * 120, abs=1)
            bar.advance(1)
            assert task.speed == pytest.approx(2 / 240) and task.time_remaining == pytest.approx(4 * 120, abs=1)
            bar.note("(update 7: rollouts 3/8)")
            assert task.description == "score_rl RL updates (update 7: rollouts 3/8)"
    finally:
        progress.end_stage()
