"""Multi-step arithmetic word problems that need the interpreter (difficulty = horizon H).

A task is a chain of H operations (big products, modular powers, sums over ranges, gcd/lcm,
digit sums, exact fractions...), each step's result feeding the next, so a correct solution needs
H dependent code steps. Values are computed here with the same Python expressions the solution
code uses (host-side, by our own code: no model-written code is ever evaluated in the host).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from score_distill.trajectory import Task

TOOLS = ["python", "final_answer_print"]
_BIG = 10**30  # values beyond this get a reducing operation next, to keep observations short


@dataclass(frozen=True)
class Op:
    # Code templates use multi-letter names for their own loop variables: the chain's variables
    # are single letters (a, b, ...) and must never be shadowed.
    name: str
    takes: str  # "none" (starts a chain) | "int" | "frac"
    sample: Callable[[random.Random, Any], dict | None]  # parameters, or None if the op does not fit x
    fn: Callable[..., Any]  # fn(x, **params): the value, computed exactly as ``code`` does
    code: str  # "{inp}" = previous variable; parameters by name
    phrases: tuple[str, ...]  # wording in the question; "{prev}" = the previous quantity's letter
    imports: str = ""
    reduces: bool = False  # keeps a big value small


def _small_prime_factor_product(x: int, rng: random.Random) -> int:
    ps = [p for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37) if x % p == 0]
    return math.prod(rng.sample(ps, min(len(ps), 3))) if ps else 1


def _gcd_params(r: random.Random, x: Any) -> dict | None:
    if not isinstance(x, int) or x < 10:
        return None
    c = _small_prime_factor_product(x, r) * r.randint(10**4, 10**7)
    return {"c": c} if math.gcd(x, c) > 9 else None


def _gcd0_params(r: random.Random, x: Any) -> dict:
    g = r.randint(100, 9999)
    return {"a": g * r.randint(10**4, 10**6), "b": g * r.randint(10**4, 10**6)}


def _frac_small(x: Fraction) -> bool:
    return max(x.numerator, x.denominator) < 10**20


def _divisors(n: int) -> int:
    return sum(1 for d in range(1, n + 1) if n % d == 0)


OPS: list[Op] = [
    # -- chain starters
    Op("product", "none", lambda r, x: {"a": r.randint(10**4, 10**7), "b": r.randint(10**4, 10**7)},
       lambda x, a, b: a * b, "{a} * {b}",
       ("the product of {a} and {b}", "{a} multiplied by {b}", "{a} times {b}")),
    Op("power_sum", "none", lambda r, x: {"lo": r.randint(1, 50), "hi": r.randint(100, 800), "e": r.randint(2, 4)},
       lambda x, lo, hi, e: sum(k**e for k in range(lo, hi + 1)), "sum(num**{e} for num in range({lo}, {hi} + 1))",
       ("the sum of k^{e} over all integers k from {lo} to {hi}",
        "the sum of the integers from {lo} through {hi}, each raised to the power {e}")),
    Op("modpow0", "none",
       lambda r, x: {"a": r.randint(100, 99999), "e": r.randint(100, 9999), "m": r.randint(1000, 99999)},
       lambda x, a, e, m: pow(a, e, m), "pow({a}, {e}, {m})",
       ("the remainder when {a} raised to the power {e} is divided by {m}", "{a}^{e} modulo {m}")),
    Op("lcm_range", "none", lambda r, x: {"n": r.randint(12, 40)},
       lambda x, n: math.lcm(*range(1, n + 1)), "math.lcm(*range(1, {n} + 1))",
       ("the least common multiple of all integers from 1 to {n}",
        "the smallest positive number divisible by each of 1, 2, ..., {n}"),
       imports="import math\n"),
    Op("fact_digits", "none", lambda r, x: {"n": r.randint(25, 120)},
       lambda x, n: sum(int(d) for d in str(math.factorial(n))), "sum(int(ch) for ch in str(math.factorial({n})))",
       ("the sum of the digits of {n}!", "the digit sum of the factorial of {n}"), imports="import math\n"),
    Op("harmonic", "none", lambda r, x: {"n": r.randint(5, 16)},
       lambda x, n: sum(Fraction(1, k) for k in range(1, n + 1)), "sum(Fraction(1, num) for num in range(1, {n} + 1))",
       ("the exact sum 1/1 + 1/2 + ... + 1/{n}",
        "the sum of the reciprocals of the integers from 1 to {n}, as an exact fraction"),
       imports="from fractions import Fraction\n"),
    Op("gcd0", "none", _gcd0_params,
       lambda x, a, b: math.gcd(a, b), "math.gcd({a}, {b})",
       ("the greatest common divisor of {a} and {b}", "the gcd of {a} and {b}"), imports="import math\n"),
    # -- integer steps
    Op("mod", "int", lambda r, x: (lambda m: {"m": m} if x > m * 10 else None)(r.randint(1000, 99999)),
       lambda x, m: x % m, "{inp} % {m}",
       ("the remainder when {prev} is divided by {m}", "{prev} modulo {m}"), reduces=True),
    Op("modpow", "int", lambda r, x: {"e": r.randint(2, 999), "m": r.randint(1000, 99999)},
       lambda x, e, m: pow(x, e, m), "pow({inp}, {e}, {m})",
       ("the remainder when {prev} raised to the power {e} is divided by {m}", "{prev}^{e} modulo {m}"), reduces=True),
    Op("digit_sum", "int", lambda r, x: {} if x >= 1000 else None,
       lambda x: sum(int(d) for d in str(x)), "sum(int(ch) for ch in str({inp}))",
       ("the sum of the digits of {prev}", "the digit sum of {prev}"), reduces=True),
    Op("gcd", "int", _gcd_params, lambda x, c: math.gcd(x, c), "math.gcd({inp}, {c})",
       ("the greatest common divisor of {prev} and {c}", "the gcd of {prev} and {c}"),
       imports="import math\n", reduces=True),
    Op("mul", "int", lambda r, x: {"c": r.randint(1000, 99999)} if x < _BIG else None,
       lambda x, c: x * c, "{inp} * {c}", ("the product of {prev} and {c}", "{prev} multiplied by {c}")),
    Op("add_pow", "int", lambda r, x: {"a": r.randint(2, 9), "e": r.randint(10, 60)} if x < _BIG else None,
       lambda x, a, e: x + a**e, "{inp} + {a}**{e}",
       ("{prev} plus {a} to the power {e}", "the sum of {prev} and {a}^{e}")),
    Op("square_sum_to", "int", lambda r, x: {} if 10 <= x <= 50000 else None,
       lambda x: sum(k * k for k in range(1, x + 1)), "sum(num * num for num in range(1, {inp} + 1))",
       ("the sum of the squares of the integers from 1 to {prev}", "1^2 + 2^2 + ... + {prev}^2")),
    Op("divisor_count", "int", lambda r, x: {} if 10 <= x <= 200000 else None,
       _divisors, "sum(1 for div in range(1, {inp} + 1) if {inp} % div == 0)",
       ("the number of positive divisors of {prev}", "how many positive integers divide {prev}")),
    Op("reverse", "int", lambda r, x: {} if x >= 100 and x % 10 and x < _BIG else None,
       lambda x: int(str(x)[::-1]), "int(str({inp})[::-1])",
       ("the number obtained by reversing the digits of {prev}", "{prev} written backwards")),
    Op("to_frac", "int",
       lambda r, x: {"d": r.randint(7, 999), "a": r.randint(1, 97), "b": r.randint(2, 99)} if x < 10**15 else None,
       lambda x, d, a, b: Fraction(x, d) + Fraction(a, b), "Fraction({inp}, {d}) + Fraction({a}, {b})",
       ("{prev} divided by {d}, plus {a}/{b}, as an exact fraction", "the exact value of {prev}/{d} + {a}/{b}"),
       imports="from fractions import Fraction\n"),
    # -- fraction steps
    Op("frac_mul", "frac", lambda r, x: {"a": r.randint(2, 99), "b": r.randint(2, 99)} if _frac_small(x) else None,
       lambda x, a, b: x * Fraction(a, b), "{inp} * Fraction({a}, {b})",
       ("{prev} multiplied by {a}/{b}", "the product of {prev} and {a}/{b}"),
       imports="from fractions import Fraction\n"),
    Op("frac_add", "frac", lambda r, x: {"a": r.randint(1, 99), "b": r.randint(2, 99)} if _frac_small(x) else None,
       lambda x, a, b: x + Fraction(a, b), "{inp} + Fraction({a}, {b})",
       ("{prev} plus {a}/{b}", "the sum of {prev} and {a}/{b}"), imports="from fractions import Fraction\n"),
    Op("num_den_sum", "frac", lambda r, x: {},
       lambda x: x.numerator + x.denominator, "{inp}.numerator + {inp}.denominator",
       ("the sum of the numerator and the denominator of {prev} in lowest terms",), reduces=True),
    Op("floor", "frac", lambda r, x: {} if x >= 10 else None,
       lambda x: x.numerator // x.denominator, "{inp}.numerator // {inp}.denominator",
       ("the integer part of {prev}", "the largest integer not exceeding {prev}"), reduces=True),
]
OPS_BY_NAME = {op.name: op for op in OPS}

_DEFINE = ("Let {O} be {phrase}.", "Define {O} as {phrase}.", "Call {phrase} {O}.", "{O} is {phrase}.")
_ASK = ("What is {O}?", "Find the exact value of {O}.", "Compute {O}.", "What is the value of {O}?")
_ASK_FRAC = ("Give {O} as an exact fraction.", "What is {O}, as a fraction in lowest terms?")
_LEAD = ("Now I compute", "Next I need", "I will calculate", "Next, I find")


def _kind(x: Any) -> str:
    return "frac" if isinstance(x, Fraction) and x.denominator != 1 else "int"


def _pick(rng: random.Random, x: Any, seen: set[str]) -> tuple[Op, dict, Any] | None:
    if x is None:
        cands = [o for o in OPS if o.takes == "none"]
    else:
        k = _kind(x)
        cands = [o for o in OPS if o.takes == k]
        big = x >= _BIG if k == "int" else max(x.numerator, x.denominator) >= 10**20
        if big:
            cands = [o for o in cands if o.reduces]
    for _ in range(50):
        op = rng.choice(cands)
        params = op.sample(rng, x)
        if params is None:
            continue
        v = op.fn(x, **params) if x is not None else op.fn(None, **params)
        # Degenerate or repeated values would make progress on the chain ambiguous to detect.
        # A Fraction that came out whole would still be a Fraction in the sandbox, where integer
        # steps (pow with modulus, gcd, range) reject it: resample instead.
        if isinstance(v, Fraction) and v.denominator == 1:
            continue
        if abs(v) < 10 or str(v) in seen:
            continue
        return op, params, v
    return None


def _letters(h: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(h)]


def make_math_task(task_id: str, horizon: int, rng: random.Random, seed: int) -> Task:
    if not 1 <= horizon <= 26:
        raise ValueError(f"math horizon must be in 1..26, got {horizon}")
    for _ in range(100):
        chain: list[tuple[Op, dict, Any]] = []
        x: Any = None
        seen: set[str] = set()
        for _ in range(horizon):
            got = _pick(rng, x, seen)
            if got is None:
                break
            chain.append(got)
            x = got[2]
            seen.add(str(x))
        if len(chain) == horizon:
            break
    else:  # pragma: no cover
        raise RuntimeError("could not build a math chain")
    letters = _letters(horizon)
    sentences, plan_parts, steps = [], [], []
    for i, (op, params, value) in enumerate(chain):
        cur, prev = letters[i], (letters[i - 1] if i else "")
        phrase = rng.choice(op.phrases).format(prev=prev, **params)
        sentences.append(rng.choice(_DEFINE).format(O=cur, phrase=phrase))
        plan_parts.append(f"{cur} = {phrase}")
        var, inp = cur.lower(), (prev.lower() if i else "")
        expr = op.code.format(inp=inp, **params)
        last = i == horizon - 1
        code = f"{op.imports}{var} = {expr}\n" + (f"final_answer_print({var})" if last else f"print({var})")
        lead = rng.choice(_LEAD) if i else "First I compute"
        thought = f"{lead} {cur}, {phrase}." + (" This is the final quantity, so I submit it." if last else "")
        steps.append({"kind": "action", "thought": thought, "code": code, "value": str(value), "var": var,
                      "op": op.name, "params": params})
    ask = rng.choice(_ASK_FRAC if isinstance(chain[-1][2], Fraction) else _ASK).format(O=letters[-1])
    question = " ".join(sentences) + " " + ask
    plan = ("I will compute the quantities in order, each from the previous one: " + "; ".join(plan_parts)
            + f". The numbers are large, so I will do exact arithmetic in Python and submit {letters[-1]}.")
    solution = [{"kind": "plan", "thought": plan, "code": "", "value": ""}, *steps]
    return Task(id=task_id, question=question, answer=str(chain[-1][2]), source="math", tools=list(TOOLS),
                meta={"suite": "math", "horizon": horizon, "seed": seed, "solution": solution})
