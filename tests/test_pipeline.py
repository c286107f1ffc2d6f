"""End to end: `score-distill run --preset tiny` through every stage, kill -9 and resume, config errors.

The tiny preset uses a randomly initialised model, so its success rates mean nothing; what is tested
is that every stage runs for real (sandbox, oracle teacher, SFT, GRPO, evaluation, report) and that
an interrupted run resumes to the same records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from score_distill.cli import main
from score_distill.pipeline import STAGE_NAMES, config_changes
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import read_jsonl

FAST = ["tasks.n_train=6", "tasks.n_eval=2", "eval.seeds=[0]"]


def run_cli(out: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "score_distill.cli", "run", "--preset", "tiny", "--out", str(out), *FAST, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "CI": "1"})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    r = run_cli(out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def records(path: Path) -> list[tuple]:
    """What must not differ between an interrupted and an uninterrupted run."""
    return [(t.task.id, [(s.render(), s.observation, s.origin) for s in t.steps],
             [(c.step_index, c.valid) for c in t.corrections], t.outcome) for t in read_jsonl(path, Trajectory)]


def test_tiny_pipeline_runs_every_stage(reference_run):
    out = reference_run
    from score_distill.utils.peak_memory import reset_peak

    for stage in STAGE_NAMES:
        st = json.loads((out / stage / "stage.json").read_text())
        assert st["status"] == "done", stage
        if not st.get("skipped") and reset_peak():  # each stage that ran records its own peak memory
            assert st["peak_rss_gb"] > 0, stage
    # The comparison's arms are off by default: marked skipped, so switching one on later makes it owed.
    assert json.loads((out / "bc_continued" / "stage.json").read_text())["skipped"] == "disabled"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["student"]["model"] == "tiny" and "torch" in manifest["versions"]
    assert manifest["machine"]["cpus"] >= 1
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policies"]) == {"teacher", "student_init", "bc_init", "bc_baseline", "score_sft", "score_rl"}
    # The oracle teacher solves every held-out task; every policy has a figure for every suite.
    suites = set(summary["policies"]["teacher"])
    assert suites == {"math@H2", "search@H2"}
    assert all(m["success_mean"] == 1.0 for m in summary["policies"]["teacher"].values())
    assert all(set(v) == suites for v in summary["policies"].values())
    # Training compute, cumulative from the untrained student: SCoRe's chain adds up its stages.
    comp = summary["compute"]
    steps = {s: json.loads((out / s / "stage.json").read_text())["steps"] for s in ("bc_init", "score_sft",
                                                                                       "bc_baseline")}
    assert comp["student_init"] == {"sft_steps": 0, "sft_tokens": 0, "rl_updates": 0, "rl_tokens": 0}
    assert comp["bc_init"]["sft_steps"] == steps["bc_init"] > 0 and comp["bc_init"]["sft_tokens"] > 0
    assert comp["score_sft"]["sft_steps"] == steps["bc_init"] + steps["score_sft"]
    assert comp["score_sft"]["sft_tokens"] > comp["bc_init"]["sft_tokens"] and comp["score_sft"]["rl_updates"] == 0
    rl_log = read_jsonl(out / "score_rl" / "log.jsonl")
    assert comp["score_rl"]["sft_steps"] == comp["score_sft"]["sft_steps"]
    assert len(rl_log) > 0 and comp["score_rl"]["rl_updates"] == sum(r["optimizer_steps"] for r in rl_log)
    assert comp["score_rl"]["rl_tokens"] == sum(r["train_tokens"] for r in rl_log)
    assert comp["bc_baseline"]["sft_steps"] == steps["bc_baseline"] and comp["bc_baseline"]["rl_updates"] == 0
    assert summary["mps"]["n_tasks"] == len(read_jsonl(out / "tasks" / "mps.jsonl"))
    assert summary["teacher_tokens"]["mps"]["tokens"] > 0
    # Each step of the chain against the one before it, per suite, paired over every held-out task.
    steps_done = {(c["suite"], c["a"], c["b"]): c["n_tasks"] for c in summary["comparisons"]}
    n_eval = {s: m["n_tasks"] for s, m in summary["policies"]["teacher"].items()}
    assert steps_done == {(s, a, b): n_eval[s] for s in suites for a, b in (
        ("bc_init", "student_init"), ("score_sft", "bc_init"), ("score_rl", "score_sft"),
        ("score_sft", "bc_baseline"), ("score_rl", "bc_baseline"))}
    # Every MPS task has exactly one record; the split halves share no task.
    mps_ids = [r[0] for r in records(out / "mps" / "trajectories.jsonl")]
    assert sorted(mps_ids) == sorted(t["id"] for t in read_jsonl(out / "tasks" / "mps.jsonl"))
    sft_ids = {t.task.id for t in read_jsonl(out / "split" / "sft.jsonl", Trajectory)}
    rl_ids = {t.task.id for t in read_jsonl(out / "split" / "rl.jsonl", Trajectory)}
    assert not sft_ids & rl_ids
    assert (out / "score_rl" / "log.jsonl").exists() and (out / "score_rl" / "model" / "config.json").exists()
    html = (out / "report.html").read_text()
    assert "<svg" in html and 'src="http' not in html and "<link " not in html  # self-contained
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))


def test_stage_benchmark_reruns_one_stage_on_a_copy(reference_run, tmp_path, monkeypatch, benchmark_script):
    bench = benchmark_script("stage_alone")
    out = tmp_path / "mps.json"
    before = (reference_run / "mps" / "trajectories.jsonl").read_bytes()
    monkeypatch.setattr(sys, "argv", ["stage_alone", "--run", str(reference_run), "--stage", "mps",
                                      "--set", "mps.chunk_size=2", "--json", str(out)])
    bench.main()
    res = json.loads(out.read_text())
    n = len(read_jsonl(reference_run / "mps" / "trajectories.jsonl"))
    assert res["overrides"] == ["mps.chunk_size=2"] and res["n_tasks"] == n == sum(res["status"].values()) > 0
    assert res["seconds"] > 0 and sum(res["corrections"].values()) == n
    assert (reference_run / "mps" / "trajectories.jsonl").read_bytes() == before  # the run itself is untouched


def test_rerun_is_idempotent(reference_run):
    before = (reference_run / "mps" / "trajectories.jsonl").read_bytes()
    history = json.loads((reference_run / "manifest.json").read_text())["history"]
    r = run_cli(reference_run)
    assert r.returncode == 0, r.stderr[-2000:]
    # The manifest keeps every command that worked in the folder, not only the latest.
    manifest = json.loads((reference_run / "manifest.json").read_text())
    assert manifest["history"][:-1] == history and manifest["history"][0]["created"] == manifest["created"]
    assert manifest["history"][-1]["command"] == manifest["command"] and "run" in manifest["command"]
    assert "mps: done, skipped" in r.stderr
    assert (reference_run / "mps" / "trajectories.jsonl").read_bytes() == before


def test_config_changes_name_the_fields():
    old = {"seed": 0, "bc_baseline": {"enabled": True, "sft": {"max_steps": 48}}, "eval": {"seeds": [0, 1]}}
    new = {"seed": 0, "bc_baseline": {"enabled": False, "sft": {"max_steps": 48}}, "eval": {"seeds": [0]},
           "extra": 1}
    assert config_changes(old, new) == ["bc_baseline.enabled: True -> False", "eval.seeds: [0, 1] -> [0]",
                                        "extra: None -> 1"]
    assert config_changes(old, old) == [] and config_changes(None, {"a": 1}) == ["config: None -> {'a': 1}"]


def _kill_when(out: Path, cond, extra=(), timeout: float = 600) -> None:
    cmd = [sys.executable, "-m", "score_distill.cli", "run", "--preset", "tiny", "--out", str(out), *FAST, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    try:
        while proc.poll() is None and not cond():
            if time.time() - t0 > timeout:
                raise TimeoutError("condition never met")
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_kill9_during_mps_and_sft_then_resume_gives_the_same_records(reference_run, tmp_path):
    out = tmp_path / "run"
    mps_file = out / "mps" / "trajectories.jsonl"
    # 1) killed in the middle of MPS: after its first chunk is on disk, before the stage is done.
    _kill_when(out, lambda: mps_file.exists() and mps_file.stat().st_size > 0, extra=["mps.chunk_size=1"])
    assert not (out / "mps" / "stage.json").exists()
    n_before = len(read_jsonl(mps_file, Trajectory))
    # 2) resumed and killed again in the middle of SCoRe-SFT training (a checkpoint written, stage not done).
    ckpt = out / "score_sft" / "train"
    _kill_when(out, lambda: ckpt.exists() and any(ckpt.rglob("checkpoint-*")),
               extra=["mps.chunk_size=1", "score_sft.sft.save_steps=1", "score_sft.sft.epochs=3"])
    assert not (out / "score_sft" / "stage.json").exists()
    # 3) the same command finishes the run.
    r = run_cli(out, "mps.chunk_size=1", "score_sft.sft.save_steps=1", "score_sft.sft.epochs=3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert all((out / s / "stage.json").exists() for s in STAGE_NAMES)
    got = records(mps_file)
    assert len(got) >= n_before and len({g[0] for g in got}) == len(got)  # none duplicated
    # Same records as the uninterrupted run (chunk size changes nothing but the unit of resume... and the
    # sampling seeds, so compare against a reference made with the same settings).
    ref = tmp_path / "ref"
    r = run_cli(ref, "mps.chunk_size=1", "score_sft.sft.save_steps=1", "score_sft.sft.epochs=3", "--to", "split")
    assert r.returncode == 0, r.stderr[-3000:]
    assert got == records(ref / "mps" / "trajectories.jsonl")
    assert records(out / "split" / "sft.jsonl") == records(ref / "split" / "sft.jsonl")


def test_config_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", "--preset", "tiny", "--out", str(tmp_path / "r"), "mps.max_correction=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'mps.max_correction'" in err and "Traceback" not in err
    assert main(["run", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "missing.yaml: config file not found" in capsys.readouterr().err
    assert main(["run", "--preset", "tiny", "--out", str(tmp_path / "r"), "rl.group_size=lots"]) == 2
    assert "rl.group_size" in capsys.readouterr().err
    assert main(["run", "--preset", "tiny", "--out", str(tmp_path / "r"), "--from", "nowhere"]) == 2
    assert "unknown stage 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "r" / "tasks").exists()  # nothing started


def test_unreachable_teacher_endpoint_is_one_line(tmp_path, capsys):
    code = main(["run", "--preset", "tiny", "--out", str(tmp_path / "r"), "teacher.kind=llm",
                 "teacher.base_url=http://127.0.0.1:9/v1", "teacher.model=m", "teacher.max_retries=0",
                 "teacher.timeout_s=2"])
    err = capsys.readouterr().err
    assert code == 2 and "127.0.0.1:9" in err and "Traceback" not in err


def test_a_stage_skipped_while_off_is_owed_once_switched_on(tmp_path):
    from score_distill.pipeline import RunDir

    run = RunDir(tmp_path / "run")
    run.mark_done("bc_baseline", 0.0, model=None, skipped="disabled")
    assert run.done("bc_baseline", enabled=False)
    assert not run.done("bc_baseline", enabled=True)
    run.mark_done("mps", 1.0)
    assert run.done("mps") and not run.done("score_sft")
