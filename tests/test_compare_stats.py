"""Task-level paired statistics: one task is one observation whatever its number of episodes."""

import pytest

from score_distill.compare.stats import bootstrap_ci, compare_tasks, paired_episodes, sign_test, task_means


def _eps(scores: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {"math@H2": {f"seed{s}/{task}": x for task, xs in scores.items() for s, x in enumerate(xs)}}


def test_repeats_of_one_task_count_once():
    # Three training seeds x two sampling seeds of the same 2 tasks: 12 episodes, 2 tasks.
    a = [_eps({"t1": [1, 1], "t2": [0, 1]})] * 3
    b = [_eps({"t1": [0, 0], "t2": [0, 0]})] * 3
    pairs = paired_episodes(a, b)
    assert len(pairs) == 12
    c = compare_tasks("score_rl", "bc_baseline", 2, pairs, n_boot=2000)
    assert (c["n_tasks"], c["better"], c["worse"], c["same"], c["unit"]) == (2, 2, 0, 0, "task")
    assert c["p_value"] == pytest.approx(0.5)  # 2 of 2 one way, two-sided: an episode count would say 2^-11
    assert c["diff_mean"] == pytest.approx(0.75)
    lo, hi = c["diff_ci95"]
    assert lo == pytest.approx(0.5) and hi == pytest.approx(1.0)  # the two tasks' differences bound the mean


def test_task_means_average_over_seeds_and_only_paired_episodes_count():
    a = [{"s": {"seed0/t": 1.0, "seed1/t": 0.0, "seed0/u": 1.0}}]
    b = [{"s": {"seed0/t": 0.5, "seed1/t": 0.5}}]  # task u was not run by b: no pair
    means = task_means(paired_episodes(a, b))
    assert means == {("s", "t"): (0.5, 0.5)}
    c = compare_tasks("a", "b", 4, paired_episodes(a, b))
    assert (c["better"], c["worse"], c["same"], c["p_value"]) == (0, 0, 1, 1.0)
    assert c["diff_ci95"] == [0.0, 0.0]


def test_sign_test_and_bootstrap_edges():
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 2**10)
    assert sign_test(3, 3) == pytest.approx(1.0)
    assert bootstrap_ci([]) is None
    lo, hi = bootstrap_ci([0.1] * 5 + [-0.1] * 5, n_boot=4000)
    assert lo < 0 < hi and lo == pytest.approx(-hi, abs=0.03)
    # Deterministic for a seed.
    assert bootstrap_ci([0.2, 0.0, 1.0], seed=3) == bootstrap_ci([0.2, 0.0, 1.0], seed=3)
    empty = compare_tasks("a", "b", 2, [])
    assert empty["n_tasks"] == 0 and empty["diff_ci95"] is None and empty["diff_mean"] is None
