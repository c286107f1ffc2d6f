"""Scorers for a user's own task set: ``"scorer"`` on a JSONL task line (see docs/data_formats.md).

Built-in names: ``exact`` (normalised exact match, best over the answer's aliases), ``numeric`` (the same number:
integers, decimals, fractions, LaTeX ``\\frac``; decimals within 1e-6 relative), ``math-verify`` (symbolic
equivalence with the ``math_verify`` library), ``f1`` (SQuAD token F1, best over aliases: partial credit).
Anything else is ``module:function``, imported when the task file is read (a typo fails there, naming the file and
line, not hours later): ``function(prediction: str, answer: str | list[str]) -> bool | float in [0, 1]``, where
``prediction`` is the agent's final answer with ``\\boxed{}`` and "The answer is" unwrapped. It runs in this
process: it is the user's code, not the model's.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from fractions import Fraction
from functools import cache

from score_distill.trajectory import Task

BUILTIN = ("exact", "numeric", "math-verify", "f1")
TOOLS = ("python", "web_search", "final_answer_print")


def _number(s: str) -> Fraction | None:
    from score_distill.tasks.scoring import extract_answer, parse_exact_number

    exact = parse_exact_number(s)
    if exact is not None:
        return exact
    try:
        return Fraction(extract_answer(s).replace(",", "").replace(" ", ""))
    except (ValueError, ZeroDivisionError):
        return None


def _numeric(pred: str, gold: str) -> float:
    a, b = _number(pred), _number(gold)
    if a is None or b is None:
        return 0.0
    return 1.0 if a == b or math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12) else 0.0


@cache
def load_scorer(spec: str) -> Callable[[str, str | list[str]], float]:
    """The scoring function named by ``spec``; ValueError with the reason when it cannot be found."""
    from score_distill.tasks import scoring

    def best(rule: Callable[[str, str], float | bool]) -> Callable[[str, str | list[str]], float]:
        return lambda pred, gold: max(float(rule(pred, g)) for g in (gold if isinstance(gold, list) else [gold]))

    if spec == "exact":
        return best(lambda p, g: scoring.exact_match(p, scoring.extract_answer(g)))
    if spec == "numeric":
        return best(_numeric)
    if spec == "math-verify":
        return best(scoring.math_equal)
    if spec == "f1":
        return best(scoring.f1_score)
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"unknown scorer {spec!r}: use one of {', '.join(BUILTIN)} or 'module:function'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise ValueError(f"scorer {spec!r}: cannot import module {module!r} ({e})") from None
    except AttributeError:
        raise ValueError(f"scorer {spec!r}: module {module!r} has no {name!r}") from None
    if not callable(fn):
        raise ValueError(f"scorer {spec!r} is not a function")

    def user(pred: str, gold: str | list[str]) -> float:
        v = fn(pred, gold)
        if isinstance(v, bool) or (isinstance(v, int | float) and 0.0 <= v <= 1.0):
            return float(v)
        raise ValueError(f"scorer {spec!r} returned {v!r}; expected a bool or a number in [0, 1]")

    return user


def score_with_scorer(task: Task, answer: str) -> float:
    from score_distill.tasks.scoring import extract_answer

    return load_scorer(task.meta["scorer"])(extract_answer(answer), task.answer)
