"""Scoring: every benchmark gold answer against itself and its rewritings; suites; QA F1."""

from __future__ import annotations

import pytest

from score_distill.tasks.benchmarks import PAPER_BENCHMARKS, load_benchmark
from score_distill.tasks.registry import make_tasks
from score_distill.tasks.scoring import extract_answer, f1_score, is_correct, math_equal, score
from score_distill.trajectory import Task


def _rewrites(g: str) -> list[str]:
    return [g, f"\\boxed{{{g}}}", f"${g}$", f"The answer is {g}", f"The answer is $\\boxed{{{g}}}$.",
            f"Final answer: {g}", f"  {g}\n"]


@pytest.mark.usefixtures("reference_data")
@pytest.mark.parametrize("name", PAPER_BENCHMARKS)
def test_every_gold_answer_scores_correct_against_itself_and_rewrites(name):
    bad = []
    for t in load_benchmark(name):
        for g in (t.answer if isinstance(t.answer, list) else [t.answer]):
            for rw in _rewrites(g):
                if not is_correct(t, rw) or score(t, rw) != 1.0:
                    bad.append((t.id, g, rw))
    assert not bad, bad[:5]


@pytest.mark.usefixtures("reference_data")
def test_wrong_answers_are_wrong():
    math = load_benchmark("math500")
    assert not is_correct(math[0], "\\left( 3, \\frac{\\pi}{3} \\right)")
    assert not is_correct(math[0], None) and score(math[0], None) == 0.0
    aime = load_benchmark("aime25")[0]  # gold 70
    assert is_correct(aime, "70.0") and not is_correct(aime, "71") and not is_correct(aime, "")


def test_math_equivalences():
    t = Task(id="x", question="q", answer="\\frac{1}{2}", meta={"kind": "math"})
    for a in ["1/2", "0.5", "\\dfrac{1}{2}", "\\boxed{\\frac12}", "2/4"]:
        assert is_correct(t, a), a
    assert not is_correct(t, "1/3")
    assert math_equal("[1, 2)", "\\left[1,2\\right)") and not math_equal("(1,2)", "[1,2)")
    assert math_equal("25\\%", "0.25") or math_equal("25\\%", "25")  # percentages parse


def test_qa_f1_and_em():
    t = Task(id="x", question="q", answer=["New York City", "NYC"], meta={"kind": "qa", "metric": "f1"})
    assert score(t, "the answer is NYC.") == 1.0 and is_correct(t, "new york city")
    assert score(t, "New York") == pytest.approx(0.8) and not is_correct(t, "New York")
    assert score(t, "Boston") == 0.0
    assert f1_score("肖亮", "肖亮") == 1.0 and 0 < f1_score("肖亮老师", "肖亮") < 1  # CJK per character


def test_builtin_suites_exact():
    m = make_tasks("math", 30, 3, seed=5)
    frac = next(t for t in make_tasks("math", 80, 4, seed=3) if "/" in t.answer)
    p, q = frac.answer.split("/")
    assert is_correct(frac, f"\\frac{{{p}}}{{{q}}}") and is_correct(frac, f"Fraction({p}, {q})")
    assert not is_correct(frac, str(int(p) / int(q)))  # a float is not the exact value
    t = m[0]
    assert is_correct(t, f"\\boxed{{{t.answer}}}") and not is_correct(t, str(int(t.answer.split('/')[0]) + 1))
    s = make_tasks("search", 3, 2, seed=5)[0]
    assert is_correct(s, s.answer.upper()) and is_correct(s, f"\\boxed{{{s.answer}}}")
    assert not is_correct(s, s.answer + "x")


def test_extract_answer():
    assert extract_answer("The final answer is $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{\\text{Trochophore}}") == "Trochophore"
    assert extract_answer("3.5") == "3.5" and extract_answer(None) == ""
