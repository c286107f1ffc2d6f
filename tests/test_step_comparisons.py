"""A run's table ends with each step of the chain against the one before it, paired over the held-out tasks."""

from __future__ import annotations

from score_distill.compare.steps import step_comparisons
from score_distill.report.page import _steps
from score_distill.report.run_files import parse_summary
from score_distill.report.terminal import render_summary_table
from score_distill.tasks.task_set import generate
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import write_jsonl

SOLVED = {  # policy -> suite -> indices of the held-out tasks it solves
    "student_init": {"math@H2": [], "search@H2": []},
    "bc_init": {"math@H2": [0, 1, 2], "search@H2": [0]},
    "score_sft": {"math@H2": [0, 1, 2, 3, 4, 5], "search@H2": [1]},
}


def _eval_dir(tmp_path):
    tasks = _by_suite(generate(["math", "search"], [2], 8, 2000, "eval"))
    results = {}
    for policy, per_suite in SOLVED.items():
        results[policy] = {}
        for suite, solved in per_suite.items():
            trajs = [Trajectory(task=t, steps=[], final_answer=t.answer if i in solved else "x",
                                outcome="correct" if i in solved else "wrong", score=float(i in solved))
                     for i, t in enumerate(tasks[suite])]
            write_jsonl(tmp_path / policy / suite / "seed0.jsonl", trajs)
            results[policy][suite] = {"success_mean": len(solved) / 8, "n_tasks": 8, "per_seed": [len(solved) / 8]}
    return tmp_path, results


def _by_suite(tasks):
    out = {}
    for t in tasks:
        out.setdefault(t.meta["suite_key"], []).append(t)
    return out


def test_each_step_is_paired_over_the_same_tasks(tmp_path):
    eval_dir, results = _eval_dir(tmp_path)
    recs = {(c["suite"], c["a"], c["b"]): c for c in step_comparisons(eval_dir, results)}
    assert set(recs) == {(s, a, b) for s in ("math@H2", "search@H2")
                         for a, b in (("bc_init", "student_init"), ("score_sft", "bc_init"))}
    m = recs[("math@H2", "score_sft", "bc_init")]
    assert (m["n_tasks"], m["better"], m["worse"], m["same"]) == (8, 3, 0, 5)
    assert m["diff_mean"] == 3 / 8 and m["p_value"] == 0.25
    lo, hi = m["diff_ci95"]
    assert 0 <= lo < 3 / 8 < hi <= 1
    # search: the two policies solve one task each, different ones: a paired test sees 1 better, 1 worse,
    # where the two success rates alone look identical
    s = recs[("search@H2", "score_sft", "bc_init")]
    assert (s["better"], s["worse"], s["same"], s["diff_mean"], s["p_value"]) == (1, 1, 6, 0.0, 1.0)


def test_the_table_and_the_report_show_the_steps(tmp_path):
    eval_dir, results = _eval_dir(tmp_path)
    summary = {"run": {"name": "t"}, "policies": results, "comparisons": step_comparisons(eval_dir, results)}
    text = render_summary_table(summary)
    assert "paired over the same held-out tasks" in text
    assert "math@H2: score_sft vs bc_init: +38 points" in text and "better on 3 tasks, worse on 0" in text
    html = _steps(parse_summary(summary))
    assert "search@H2: score_sft vs bc_init: +0 points" in html and "better on 1 task, worse on 1" in html
    assert render_summary_table({"run": {"name": "t"}, "policies": results}).count("paired") == 0


def test_a_run_whose_summary_predates_the_steps_gets_them_from_its_evaluation(tmp_path, capsys):
    import json

    from score_distill.report.__main__ import main

    results = _eval_dir(tmp_path / "run" / "eval")[1]
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"run": {"name": "old"}, "policies": results}))
    assert main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "math@H2: bc_init vs student_init: +38 points" in out
    assert "search@H2: score_sft vs bc_init: +0 points" in (tmp_path / "run" / "report.html").read_text()


def test_comparisons_with_the_bc_baseline_are_headed_as_such(tmp_path):
    SOLVED["bc_baseline"] = {"math@H2": [0, 1], "search@H2": []}
    try:
        eval_dir, results = _eval_dir(tmp_path)
    finally:
        del SOLVED["bc_baseline"]
    summary = {"run": {"name": "t"}, "policies": results, "comparisons": step_comparisons(eval_dir, results)}
    text = render_summary_table(summary)
    chain, refs = text.split("SCoRe against the BC baseline, paired over the same held-out tasks:")
    assert "score_sft vs bc_init" in chain and "bc_baseline" not in chain.split("Each step against")[1]
    assert "math@H2: score_sft vs bc_baseline: +50 points" in refs and "score_sft vs bc_init" not in refs
