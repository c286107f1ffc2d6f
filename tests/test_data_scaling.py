"""The data-scaling benchmark on the tiny preset: one BC run per size, its own held-out stream, the
table and plot, resume without retraining, and refusal to run on the study's held-out seed."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_data_scaling_trains_one_bc_per_size_and_resumes(tmp_path, capsys, benchmark_script):
    ds = benchmark_script("data_scaling")
    out = tmp_path / "ds"
    args = ["--preset", "tiny", "--n-train", "4,2", "--n-eval", "2", "--out", str(out), "tasks.suites=[math]"]
    assert ds.main(args) == 0
    rows = json.loads((out / "data_scaling.json").read_text())["rows"]
    assert [r["n_train"] for r in rows] == [2, 4]  # reported by size, whatever the order run
    for r in rows:
        assert r["retained"] == r["n_train"]  # the oracle teacher solves every task
        assert r["eval_seconds"] > 0 and r["steps"] > 0
        assert r["math@H2"]["n_tasks"] == 2 and 0.0 <= r["math@H2"]["format_error_rate"] <= 1.0
    assert rows[1]["teacher_tokens"] > rows[0]["teacher_tokens"] > 0
    # Held out on its own stream: the eval tasks are generated from --eval-seed, not the study's 2000.
    for n in (2, 4):
        eval_ids = [json.loads(line)["id"] for line in (out / f"H2-N{n}" / "tasks" / "eval.jsonl").open()]
        assert eval_ids and all("-s9000-" in i for i in eval_ids)
    assert (out / "data_scaling.png").stat().st_size > 1000
    assert "finished" in capsys.readouterr().out

    models = sorted(out.glob("H2-N*/bc_baseline/train/model/model.safetensors"))
    mtimes = [p.stat().st_mtime for p in models]
    assert len(models) == 2
    assert ds.main(args) == 0  # everything on disk: nothing trained or decoded again
    assert json.loads((out / "data_scaling.json").read_text())["rows"] == rows
    assert [p.stat().st_mtime for p in models] == mtimes
    assert ds.main([*args, "--report-only", "--n-train", "2,4,8"]) == 0  # a size not run yet is left out

    # An epochs grid: the configuration's own count (1 in the tiny preset) reuses the runs above; another
    # count trains into its own folder, with more optimizer steps on the same data.
    assert ds.main([*args, "--n-train", "2", "--epochs", "1,3"]) == 0
    grid = json.loads((out / "data_scaling.json").read_text())["rows"]
    assert [(r["n_train"], r["epochs"]) for r in grid] == [(2, 1.0), (2, 3.0)]
    assert grid[0] == rows[0] and (out / "H2-N2-E3" / "eval" / "results.json").exists()
    assert grid[1]["steps"] > grid[0]["steps"] and grid[1]["teacher_tokens"] == grid[0]["teacher_tokens"]


def test_data_scaling_refuses_the_studys_held_out_seed(tmp_path, capsys, benchmark_script):
    ds = benchmark_script("data_scaling")
    with pytest.raises(SystemExit):
        ds.main(["--preset", "tiny", "--eval-seed", "2000", "--out", str(tmp_path / "x")])
    assert "tune on the evaluation seeds" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # An epochs grid under a fixed step count would label identical runs differently: refused.
    with pytest.raises(SystemExit):
        ds.main(["--preset", "tiny", "--epochs", "1,2", "--out", str(tmp_path / "y"), "bc_baseline.sft.max_steps=4"])
    assert "overrides epochs" in capsys.readouterr().err and not (tmp_path / "y").exists()
