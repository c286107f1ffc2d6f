"""benchmarks/mps_cost_vs_student.py on a tiny pipeline run: another student mentored on the run's MPS tasks,
resumable, the run itself only read, and the decomposition's prediction exact for the BC-init student."""

from __future__ import annotations

import json

import pytest

from score_distill.config import load_config
from score_distill.pipeline import Pipeline


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mps-cost") / "run"
    cfg = load_config(None, ["tasks.suites=[math]", "tasks.horizons=[2]", "tasks.n_train=8", "tasks.n_eval=2",
                             "mps.chunk_size=2"], preset="tiny")
    Pipeline(cfg, run, preset="tiny").run(to_stage="bc_baseline")  # the BC baseline is a student here
    return run


def test_mentors_another_student_on_the_same_tasks(tiny_run, tmp_path, capsys, benchmark_script):
    tool = benchmark_script("mps_cost_vs_student")
    own = [json.loads(line) for line in (tiny_run / "mps" / "trajectories.jsonl").open()]
    before = {p: p.stat().st_mtime for p in tiny_run.rglob("*") if p.is_file()}
    out = tmp_path / "cost"
    args = ["--run", str(tiny_run), "--students", "bc_baseline", "--n", "4", "--out", str(out)]
    assert tool.main(args) == 0
    rec = json.loads((out / "mps_cost.json").read_text())
    base, other = rec["students"]
    assert [base["student"], other["student"]] == ["bc_init", "bc_baseline"]
    first4 = [r["task"]["id"] for r in own[:4]]
    mentored = [json.loads(line) for line in (out / "bc_baseline" / "trajectories.jsonl").open()]
    assert [r["task"]["id"] for r in mentored] == first4
    assert all(r["policy"] == "bc_baseline" for r in mentored)
    assert base["n_tasks"] == other["n_tasks"] == 4
    # The BC-init row is the run's own records, and the decomposition reproduces its measured ratio exactly.
    assert base["teacher_tokens"] == sum(r["teacher_usage"]["prompt_tokens"] + r["teacher_usage"]["completion_tokens"]
                                         for r in own[:4])
    assert base["ratio_to_bc"] == pytest.approx(base["predicted_ratio"])
    assert rec["bc_per_retained"] > 0 and rec["machine"]
    assert (out / "mps_cost.png").stat().st_size > 1000
    assert "bc_baseline" in capsys.readouterr().out
    # The study run is only read.
    assert {p: p.stat().st_mtime for p in tiny_run.rglob("*") if p.is_file()} == before
    # Resumable: a second run mentors nobody again (the records file is not rewritten).
    mtime = (out / "bc_baseline" / "trajectories.jsonl").stat().st_mtime
    assert tool.main(args) == 0
    assert (out / "bc_baseline" / "trajectories.jsonl").stat().st_mtime == mtime
    assert tool.main([*args, "--report-only"]) == 0
    assert json.loads((out / "mps_cost.json").read_text())["students"][1]["teacher_tokens"] == other["teacher_tokens"]


def test_fresh_tasks_mentor_every_student_on_tasks_nobody_trained_on(tiny_run, tmp_path, benchmark_script):
    tool = benchmark_script("mps_cost_vs_student")
    out = tmp_path / "fresh"
    args = ["--run", str(tiny_run), "--students", "bc_baseline", "--n", "3", "--fresh-seed", "5000", "--out", str(out)]
    assert tool.main(args) == 0
    fresh = [json.loads(line)["id"] for line in (out / "tasks.jsonl").open()]
    trained = {json.loads(line)["id"] for line in (tiny_run / "tasks" / "train.jsonl").open()}
    assert len(fresh) == 3 and not set(fresh) & trained
    for student in ("bc_init", "bc_baseline"):  # BC init is mentored too, not read from the run
        recs = [json.loads(line) for line in (out / student / "trajectories.jsonl").open()]
        assert [r["task"]["id"] for r in recs] == fresh and {r["policy"] for r in recs} == {student}
    rec = json.loads((out / "mps_cost.json").read_text())
    assert rec["fresh_seed"] == 5000 and rec["n_tasks"] == 3
    # Another setup into the same folder is refused, not mixed with these records.
    with pytest.raises(SystemExit):
        tool.main([*args[:-4], "--fresh-seed", "5001", "--out", str(out)])


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, benchmark_script):
    tool = benchmark_script("mps_cost_vs_student")
    with pytest.raises(SystemExit):
        tool.main(["--run", str(tmp_path), "--out", str(tmp_path / "o")])


def test_the_prediction_is_the_decomposition(benchmark_script):
    tool = benchmark_script("mps_cost_vs_student")
    # 17 of 70 alone, 95,643 tokens over 53 helped tasks, all retained, BC 1,960 per retained (H=4 seed 0).
    assert tool.predicted_ratio(17 / 70, 95643 / 53, 1.0, 1960.15625) == pytest.approx(95643 / 70 / 1960.15625)
    assert tool.predicted_ratio(1.0, 1805.0, 1.0, 1960.0) == 0.0
    assert tool.predicted_ratio(0.0, 1805.0, 0.0, 1960.0) == float("inf")
