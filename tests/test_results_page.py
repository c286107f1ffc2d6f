"""docs/results.md is generated from the committed records and is up to date; the generator renders what a record
holds, including the fields newer records add."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

from score_distill.report import results

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
PAGE = FIGURES.parent / "results.md"


def test_results_page_is_generated_from_the_committed_records():
    page = results.render(sorted(FIGURES.glob("*.json")))
    assert page == PAGE.read_text(), f"docs/results.md is out of date: run `{results.COMMAND}`"


def test_page_states_what_the_records_show():
    page = PAGE.read_text()
    wide = page.split("## Study `study_cpu_v2_eval-s3000-n30`")[1].split("\n## ")[0]
    # 30 held-out tasks, three training seeds at H=2: SCoRe-RL 87% at every seed, a Wilson interval over 30 tasks.
    assert "| score_rl | 2 | 3 | 30 | 87% | 70-95% | s0 87%, s1 87%, s2 87% |" in wide
    assert "| 2 | score_rl vs bc_baseline | 16 | 3 | 71 | 3 | 0.00443 |" in wide
    assert "not compute-matched" in wide and "96 SFT steps plus RL against the baselines' 48" in wide
    # The compute-matched H=2 comparison over 100 distinct tasks and three training seeds: the BC baseline ahead of
    # SCoRe-RL, and the guide at the top names this record as the one that supports a SCoRe-vs-BC claim.
    fair = page.split("## Study `study_cpu_v2_matched_eval-s12000-n100`")[1].split("\n## ")[0]
    assert "| 2 | score_rl vs bc_baseline | task | 100 | 3 | 4 | 42 | 54 | 5.1e-09 | [-21, -11] points |" in fair
    assert "| score_rl | 2 | 3 | 100 | 80% | 71-86% | s0 78%, s1 84%, s2 77% | 85% |" in fair
    assert "| 2 | 2 | bc_continued | 48 | yes | yes |" in fair
    guide = page.split("## ")[0]
    # The untrained student's episodes are the same at every seed: evaluated at seed 0 only, and the guide says so.
    assert ("`study_cpu_v2_matched_eval-s12000-n100`: H=2; training seeds 0, 1, 2 at H=2 (seed 0 only for "
            "student_init); 100 distinct held-out" in guide)
    assert "the interval resamples tasks, so it covers the choice of tasks, not of training seed" in guide
    assert "*not established* where the two disagree" in guide
    assert "- H=2: bc_baseline ahead of score_rl (score_rl - bc_baseline -16, [-21, -11] points, p = 5.1e-09)" in guide
    assert "bc_continued ahead of score_sft (score_sft - bc_continued -12, [-17, -6] points, p = 9.1e-06)" in guide
    assert "- H=2: score_rl vs score_sft, no difference detected (+1, [-3, +5] points, p = 0.85)" in guide
    # The compute-matched H=4 comparison, training seeds 0, 1 and 2 (the BC arms from scratch 0 and 1): each seed's
    # success beside the mean, and every comparison over the seeds that trained both of its policies.
    h4 = page.split("## Study `study_cpu_v2_matched_h4_eval-s12000-n100`")[1].split("\n## ")[0]
    assert "| 4 | score_sft vs bc_continued | task | 100 | 3 | 11 | 45 | 44 | 5.38e-06 | [-22, -10] points |" in h4
    assert "| bc_continued | 4 | 3 | 100 | 80% | 71-86% | s0 89%, s1 80%, s2 70% | 89% |" in h4
    assert ("`study_cpu_v2_matched_h4_eval-s12000-n100`: H=4; training seeds 0, 1, 2 at H=4 (seeds 0, 1 only for "
            "student_init, bc_baseline, bc_equal_budget); 100 distinct held-out tasks." in guide)
    assert "| 4 | score_rl vs bc_baseline | task | 100 | 2 | 5 | 34 | 61 | 2.43e-06 | [-24, -11] points |" in h4
    assert "(score_rl - bc_baseline -18, [-24, -11] points, p = 2.4e-06; 2 training seeds)" in guide
    assert ("- H=4: bc_continued ahead of score_rl (score_rl - bc_continued -11, [-18, -5] points, p = 0.0014)\n"
            in guide)
    h4_guide = guide.split("`study_cpu_v2_matched_h4_eval-s12000-n100`: ")[1].split("\n")[0]
    assert "(each task's success averaged over the training seeds; the interval resamples tasks" in h4_guide
    assert "- H=4: score_rl vs score_sft, no difference detected (+4, [-1, +10] points, p = 0.15)" in guide
    # H=8, one training seed, 100 tasks: no difference detected between SCoRe and BC with the same SFT steps.
    h8 = page.split("## Study `study_cpu_v2_matched_h8_eval-s12000-n100`")[1].split("\n## ")[0]
    assert "| 8 | score_sft vs bc_continued | task | 100 | 1 | 13 | 21 | 66 | 0.229 | [-19, +3] points |" in h8
    assert "| score_sft | 8 | 1 | 100 | 36% | 27-46% | s0 36% | 63% |" in h8
    assert "- H=8: score_sft vs bc_continued, no difference detected (-8, [-19, +3] points, p = 0.23)" in guide
    assert "(one training seed: the interval covers the choice of tasks, not of training seed)" in guide
    # A record with no SCoRe policy makes no claim about SCoRe's compute.
    sft1 = page.split("## Study `study_cpu_v2_bc_sft_seed1`")[1].split("\n## ")[0]
    assert "compute-matched" not in sft1


@pytest.mark.parametrize("k,n", [(0, 10), (4, 10), (10, 10), (26, 30)])
def test_wilson_matches_scipy_on_whole_counts(k, n):
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert results.wilson(k / n, n) == pytest.approx((ci.low, ci.high), abs=1e-6)


def test_new_record_fields_are_rendered(tmp_path):
    run = {"h": 2, "seed": 0, "setup": {"preset": "tiny", "config": None, "overrides": []},
           "results": {p: {"math@H2": {"success_mean": v, "progress": v, "n_tasks": 20}}
                       for p, v in (("bc_baseline", 0.5), ("score_rl", 0.75))},
           "compute": {"bc_baseline": {"optimizer_steps": 48, "trained_tokens": 98304},
                       "score_rl": {"optimizer_steps": 96, "trained_tokens": 190000}},
           "recorded": {"command": ["/x/benchmarks/distillation_study.py", "--out", "/tmp/a/runs/s"],
                        "git_revision": "0123456789abcdef", "machine": {"cpus": 16, "cuda": True,
                                                                         "memory_gb": 128, "python": "3.11"}}}
    rec = {"args": {}, "runs": [run], "aggregate": {},
           "comparisons": [{"a": "score_rl", "b": "bc_baseline", "horizon": 2, "unit": "task", "n_tasks": 20,
                            "better": 6, "worse": 1, "same": 13, "p_value": 0.125, "diff_ci95": [0.05, 0.45]}]}
    p = tmp_path / "study_new.json"
    p.write_text(json.dumps(rec))
    page = results.render([p])
    assert "| 2 | score_rl vs bc_baseline | task | 20 | - | 6 | 1 | 13 | 0.125 | [+5, +45] points |" in page
    assert "| 2 | 0 | score_rl | 96 | 190,000 |" in page and "optimizer_steps" in page
    assert "| score_rl | 2 | 1 | 20 | 75% |" in page
    assert "python benchmarks/distillation_study.py --out runs/s" in page and "`0123456`" in page
    assert "16 CPU cores, GPU, 128 GB RAM" in page


def test_matched_arms_reused_episodes_and_the_reading_guide(tmp_path):
    def run(seed, reused=None):
        r = {"h": 2, "seed": seed, "setup": {"preset": "tiny", "config": None, "overrides": []},
             "results": {p: {"math@H2": {"success_mean": 0.5, "progress": 0.5, "n_tasks": 100}}
                         for p in ("bc_baseline", "score_rl")},
             "matched": {"bc_baseline": {"steps": 96, "same_batch": True, "same_max_length": False}}}
        return {**r, "reused_episodes": reused} if reused else r

    comp = {"a": "score_rl", "b": "bc_baseline", "horizon": 2, "unit": "task", "n_tasks": 100, "better": 1,
            "worse": 1, "same": 98, "p_value": 1.0, "diff_mean": 0.0, "diff_ci95": [-0.02, 0.02]}
    fair = tmp_path / "study_fair.json"
    fair.write_text(json.dumps({"runs": [run(0), run(1, {"student_init": "H2-seed0"})], "comparisons": [comp]}))
    old = tmp_path / "study_old.json"
    old.write_text(json.dumps({"runs": [{k: v for k, v in run(0).items() if k != "matched"}],
                               "comparisons": [comp]}))
    page = results.render([fair, old])
    guide = page.split("Contents:")[1].split("\n## ")[0]
    assert "`study_fair`: H=2; training seeds 0, 1 at H=2; 100 distinct held-out tasks" in guide
    assert "- H=2: score_rl vs bc_baseline, no difference detected (+0, [-2, +2] points, p = 1)" in guide
    assert "one training seed" not in guide
    assert "The other studies (`study_old`) lack one or the other" in guide
    section = page.split("## Study `study_fair`")[1].split("\n## ")[0]
    assert "| 2 | 1 | bc_baseline | 96 | yes | no |" in section
    assert "student_init at (H=2, seed 1) from `H2-seed0`" in section
    assert "No study here" in results.render([old]) and "No study here" not in page


def test_a_policy_fewer_seeds_trained_is_named_with_its_seeds(tmp_path):
    def run(seed, policies, merged=None):
        r = {"h": 4, "seed": seed, "setup": {"preset": "tiny", "config": None, "overrides": []},
             "results": {p: {"math@H4": {"success_mean": 0.5, "progress": 0.5, "n_tasks": 100}} for p in policies},
             "matched": {"bc_continued": {"steps": 48, "same_batch": True, "same_max_length": True}}}
        return {**r, "merged_from": merged} if merged else r

    def comp(b, runs):
        return {"a": "score_rl", "b": b, "horizon": 4, "unit": "task", "n_tasks": 100, "better": 2, "worse": 30,
                "same": 68, "p_value": 1e-6, "diff_mean": -0.2, "diff_ci95": [-0.27, -0.13], "runs": runs}

    both = ("bc_baseline", "bc_continued", "score_rl")
    rec = {"runs": [run(0, both, "old.json"), run(1, both, "old.json"), run(2, ("bc_continued", "score_rl"))],
           "comparisons": [comp("bc_baseline", 2), comp("bc_continued", 3)]}
    p = tmp_path / "study_mixed.json"
    p.write_text(json.dumps(rec))
    page = results.render([p])
    guide = page.split("Contents:")[1].split("\n## ")[0]
    assert "training seeds 0, 1, 2 at H=4 (seeds 0, 1 only for bc_baseline); 100 distinct held-out tasks" in guide
    assert ("- H=4: bc_baseline ahead of score_rl (score_rl - bc_baseline -20, [-27, -13] points, p = 1e-06; "
            "2 training seeds)" in guide)
    assert ("- H=4: bc_continued ahead of score_rl (score_rl - bc_continued -20, [-27, -13] points, p = 1e-06)\n"
            in guide)
    section = page.split("## Study `study_mixed`")[1].split("\n## ")[0]
    assert "| 4 | score_rl vs bc_baseline | task | 100 | 2 | 2 | 30 | 68 |" in section
    assert "| bc_baseline | 4 | 2 | 100 | 50% |" in section and "| score_rl | 4 | 3 | 100 | 50% |" in section
    assert "Runs (4, 0), (4, 1) as recorded in `old.json` (`--merge`" in section
    # A record that grew a seed at a time merged its own earlier version: named as such, not by its own file name.
    rec["runs"][0]["merged_from"] = rec["runs"][1]["merged_from"] = "docs/figures/study_mixed.json"
    p.write_text(json.dumps(rec))
    assert "Runs (4, 0), (4, 1) as recorded in an earlier version of this record (`--merge`" in results.render([p])


def test_unknown_record_is_refused_by_name(tmp_path):
    p = tmp_path / "notes.json"
    p.write_text("{}")
    with pytest.raises(ValueError, match=r"notes\.json: not a study"):
        results.render([p])


def test_finding_needs_both_the_interval_and_the_test():
    # 10 tasks: a percentile bootstrap interval can exclude zero where the sign test does not reject
    c = {"a": "score_rl", "b": "bc_continued", "horizon": 8, "p_value": 0.125, "diff_mean": 0.5,
         "diff_ci95": [0.1, 0.9]}
    assert results._finding(c) == ("H=8: score_rl vs bc_continued, not established: the interval excludes zero, "
                                   "the sign test does not reject (+50, [+10, +90] points, p = 0.12)")
    assert results._finding({**c, "p_value": 0.01}).startswith("H=8: score_rl ahead of bc_continued (")
    assert "no difference detected" in results._finding({**c, "diff_ci95": [-0.1, 0.9], "p_value": 0.5})
    assert "not established: the sign test rejects, the interval includes zero" in results._finding(
        {**c, "diff_ci95": [-0.01, 0.9], "p_value": 0.03})
