"""benchmarks/default_run.py: GNU time's report read right; steps paired per suite over distinct tasks."""

from __future__ import annotations

import pytest

TIME_V = """\tCommand being timed: "score-distill run --out RUN"
\tUser time (seconds): 2771.40
\tElapsed (wall clock) time (h:mm:ss or m:ss): 28:18.31
\tMaximum resident set size (kbytes): 8598324
"""


def test_time_log(tmp_path, benchmark_script):
    mod = benchmark_script("default_run")
    log = tmp_path / "time.log"
    log.write_text(TIME_V)
    assert mod.time_log(log) == (1698.3, 8.2)
    log.write_text(TIME_V.replace("28:18.31", "1:02:03.5"))
    assert mod.time_log(log)[0] == 3723.5
    log.write_text("Command exited with non-zero status 1\n")
    with pytest.raises(SystemExit, match="time.log"):
        mod.time_log(log)


def test_run_refuses_a_run_folder_that_exists(tmp_path, benchmark_script):
    with pytest.raises(SystemExit, match="exists"):
        benchmark_script("default_run").run_default(tmp_path)


def test_steps_pair_each_policy_with_the_one_before_it(benchmark_script):
    mod = benchmark_script("default_run")
    eps = {
        "bc_init": {"math@H2": {f"seed0/t{i}": float(i < 2) for i in range(6)}},
        "score_sft": {"math@H2": {f"seed0/t{i}": float(i < 5) for i in range(6)}},
        "score_rl": {"math@H2": {f"seed0/t{i}": float(i < 5) for i in range(6)},
                     "search@H2": {"seed0/s0": 1.0}},
    }
    recs = mod.steps(eps)
    assert [(r["suite"], r["a"], r["b"]) for r in recs] == [("math@H2", "score_sft", "bc_init"),
                                                            ("math@H2", "score_rl", "score_sft")]
    sft = recs[0]
    assert (sft["n_tasks"], sft["better"], sft["worse"], sft["same"]) == (6, 3, 0, 3)
    assert sft["diff_mean"] == pytest.approx(0.5)
    assert recs[1]["better"] == recs[1]["worse"] == 0 and recs[1]["p_value"] == 1.0
