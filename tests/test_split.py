"""Shares of training tasks (BC / MPS) and of MPS tasks (SCoRe-SFT / SCoRe-RL) are taken within each suite."""

from __future__ import annotations

from collections import Counter

from score_distill.stages.mps import CORRECTED
from score_distill.stages.split import SplitConfig, split_mps, take_share
from score_distill.tasks.task_set import generate
from score_distill.trajectory import Trajectory


def _tasks(n: int = 29):
    return generate(["math", "search"], [2], n, 1000, "train")


def test_each_suite_gets_its_share_whatever_the_seed():
    tasks = _tasks()
    suite = {t.id: t.meta["suite_key"] for t in tasks}
    for seed in range(30):
        chosen = take_share(tasks, 0.5, seed, "bc")
        per_suite = Counter(suite[i] for i in chosen)
        # 29 tasks a suite: 14 or 15 each; a coin flip per task (the old split) misses that for 27 of these 30 seeds
        assert set(per_suite) == {"math@H2", "search@H2"}
        assert all(c in (14, 15) for c in per_suite.values()), (seed, per_suite)


def test_the_share_is_seeded_and_reproducible():
    tasks = _tasks()
    assert take_share(tasks, 0.5, 3, "bc") == take_share(list(reversed(tasks)), 0.5, 3, "bc")
    assert take_share(tasks, 0.5, 3, "bc") != take_share(tasks, 0.5, 4, "bc")
    assert take_share(tasks, 0.5, 3, "bc") != take_share(tasks, 0.5, 3, "split")
    assert take_share(tasks, 1.0, 0, "bc") == {t.id for t in tasks}
    assert take_share(tasks, 0.0, 0, "bc") == set()


def test_rounding_is_unbiased_over_seeds():
    tasks = generate(["math", "search"], [2], 3, 1000, "train")  # 1.5 a suite at share 0.5
    sizes = [len(take_share(tasks, 0.5, seed, "split")) for seed in range(400)]
    assert set(sizes) <= {2, 3, 4}
    assert abs(sum(sizes) / len(sizes) - 3.0) < 0.2


def test_split_mps_halves_each_suite_and_no_task_is_in_both():
    tasks = _tasks(20)
    records = [Trajectory(task=t, steps=[], final_answer=t.answer, outcome="correct",
                          meta={"mps_status": CORRECTED, "n_corrections": 1}) for t in tasks]
    sft, rl = split_mps(records, SplitConfig(sft_share=0.5), seed=0)
    assert {r.task.id for r in sft}.isdisjoint({r.task.id for r in rl})
    assert len(sft) + len(rl) == len(records)
    assert Counter(r.task.meta["suite_key"] for r in sft) == {"math@H2": 10, "search@H2": 10}
