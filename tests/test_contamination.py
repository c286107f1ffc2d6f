"""De-duplication of training tasks against evaluation sets."""

from __future__ import annotations

import time

import pytest

from score_distill.tasks.benchmarks import PAPER_BENCHMARKS, data_dir, load_benchmark, load_jsonl_tasks
from score_distill.tasks.contamination import dedupe_against_eval
from score_distill.trajectory import Task


def _t(i, q, src="train"):
    return Task(id=f"{src}-{i}", question=q, answer="x", source=src)


def test_exact_normalized_near_and_distinct():
    ev = {"setA": [_t(0, "Where was the director of film The Half-Way Girl born?", "a"),
                   _t(1, "Simplify sqrt(245).", "a")],
          "setB": [_t(2, "在2022年9月南京理工大学计算机学院举办的讲座中，谁是讲座的主讲人？", "b")]}
    train = [_t(0, "Where was the director of film The Half-Way Girl born?"),  # exact
             _t(1, "where was the DIRECTOR of film the half-way girl born ??"),  # normalised
             _t(2, "2022年9月南京理工大学计算机学院举办的讲座中，谁是讲座的主讲人？"),  # near (no spaces: chars)
             _t(3, "Simplify sqrt(242)."),  # similar text, different number: a different question
             _t(4, "What is the capital of Kelmora?")]
    kept, rep = dedupe_against_eval(train, ev)
    assert [t.id for t in kept] == ["train-3", "train-4"]
    assert rep.removed == 3 and rep.train_total == 5
    assert rep.by_eval_set["setA"]["exact"] == 1 and rep.by_eval_set["setA"]["normalized"] == 0  # strongest kind
    assert rep.by_eval_set["setB"]["near"] == 1
    assert {m[2] for m in rep.matches} == {"exact", "normalized", "near"}
    assert "removed 3 of 5" in rep.summary() and rep.to_dict()["removed"] == 3
    kept2, rep2 = dedupe_against_eval(train, ev, near=False)
    assert len(kept2) == 3 and rep2.leaked() == 1 + 0  # setA exact (the normalised one maps to the same eval item)


@pytest.mark.usefixtures("reference_data")
def test_reference_seeds_leak_577_evaluation_questions():
    root = data_dir() / "seeds"
    seeds = [t for f in sorted(root.glob("*.jsonl")) for t in load_jsonl_tasks(f)]
    evals = [t for name in PAPER_BENCHMARKS for t in load_benchmark(name)]
    assert len(seeds) == 15353
    t0 = time.perf_counter()
    kept, rep = dedupe_against_eval(seeds, evals)
    elapsed = time.perf_counter() - t0
    exact = {k: v["exact"] for k, v in rep.by_eval_set.items() if v["exact"]}
    # The paper's figure counts byte-identical questions.
    assert exact == {"2wiki": 116, "webwalker": 118, "hotpotqa": 90, "bamboogle": 78, "hle": 64, "musique": 58,
                     "gaia": 53}
    assert sum(exact.values()) == 577
    # Normalisation finds more of the same questions (case, "??", whitespace): hotpotqa +19, hle +9.
    assert rep.by_eval_set["hotpotqa"]["normalized"] == 19 and rep.by_eval_set["hle"]["normalized"] == 9
    assert rep.leaked() >= 605
    assert len(kept) == len(seeds) - rep.removed
    assert elapsed < 30, elapsed  # "a few seconds" on an idle core; generous for a loaded CI box
