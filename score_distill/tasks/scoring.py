"""Answer scoring: deterministic, no model calls.

Which rule applies is decided by the task:

* built-in suites (``meta["suite"]``): math -> exact number (int or fraction, any common
  rendering: ``7/3``, ``\\frac{7}{3}``, ``\\boxed{7/3}``); search -> exact entity name after
  SQuAD normalisation;
* benchmarks with ``meta["kind"] == "math"`` (and any other task whose answer is one string):
  normalised exact match, then ``math_verify`` (LaTeX, fractions, intervals, percentages...);
* QA benchmarks (``meta["metric"] == "f1"``, or an alias list): exact match / token-level F1
  with the standard SQuAD normalisation, best over the aliases. ``score`` is the F1.

Answers are first unwrapped (:func:`extract_answer`): ``\\boxed{..}``, ``$..$``, ``\\(..\\)``,
"The answer is X", "Final answer: X", a trailing period.
"""

from __future__ import annotations

import collections
import re
import string
import threading
from fractions import Fraction

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from score_distill.trajectory import Task

_PREFIX = re.compile(
    r"^\s*(?:(?:so\s*,?\s*)?the\s+(?:final\s+)?answer\s+is|final\s+answer|answer)\s*[:：]?\s*", re.I)


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} (balanced braces), or None."""
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            best = text[m.end(): i - 1]
        elif best is None and text.rstrip().endswith("}"):
            # Unbalanced content (a truncated gold such as "\\frac{d^{2}k"): up to the last brace.
            best = text[m.end(): text.rstrip().rfind("}")]
    return best


def extract_answer(text: str | None) -> str:
    """The answer inside common wrappers; the text itself (stripped) when there is none."""
    if text is None:
        return ""
    s = str(text).strip()
    for _ in range(3):  # wrappers nest: "The answer is $\\boxed{5}$."
        before = s
        s = _PREFIX.sub("", s).strip()
        boxed = _last_boxed(s)
        if boxed is not None:
            s = boxed.strip()
        for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b):
                s = s[len(a): len(s) - len(b)].strip()
        s = re.sub(r"^\\text\{(.*)\}$", r"\1", s, flags=re.S).strip()
        if s.endswith(".") and not re.search(r"\d\.$", s[-2:]) and not s.endswith("..."):
            s = s[:-1].rstrip()
        if s == before:
            break
    return s


# -- SQuAD normalisation (lowercase, strip punctuation and articles, collapse whitespace)
_PUNCT = set(string.punctuation) | set("，。！？；：“”‘’（）《》、")


def normalize_text(s: str) -> str:
    s = str(s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _tokens(s: str) -> list[str]:
    norm = normalize_text(s)
    # CJK text has no spaces: score it per character, as the multilingual SQuAD variants do.
    return [t for w in norm.split() for t in (list(w) if re.search(r"[\u3000-\u9fff]", w) else [w])]


def f1_score(prediction: str, gold: str) -> float:
    p, g = _tokens(prediction), _tokens(gold)
    if not p or not g:
        return float(p == g)
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_text(prediction) == normalize_text(gold)


# -- numbers
_FRAC_LATEX = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")
_NUM = re.compile(r"^-?\d+(?:/\d+)?$")


def parse_exact_number(s: str) -> Fraction | None:
    """An exact rational from '123', '-7/3', '\\frac{7}{3}', '1,234', 'Fraction(7, 3)'; else None."""
    s = extract_answer(s).replace(" ", "")
    m = re.fullmatch(r"Fraction\((-?\d+),(-?\d+)\)", s)
    if m:
        return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
    s = s.replace("{,}", "").replace(",", "")  # thousands separators
    m = _FRAC_LATEX.match(s)
    if m:
        v = Fraction(int(m.group(2)), int(m.group(3))) if int(m.group(3)) else None
        return -v if (v is not None and m.group(1)) else v
    if _NUM.match(s):
        num, _, den = s.partition("/")
        return Fraction(int(num), int(den)) if den and int(den) else (Fraction(int(num)) if not den else None)
    if re.fullmatch(r"-?\d+\.0*", s):
        return Fraction(int(s.split(".")[0]))
    return None


_GOLD_CFG = [LatexExtractionConfig(), ExprExtractionConfig()]


def math_equal(prediction: str | None, gold: str) -> bool:
    """Normalised string match, then exact numbers, then math_verify (symbolic equivalence)."""
    if prediction is None:
        return False
    pred, g = extract_answer(prediction), extract_answer(gold)
    if not pred:
        return False
    if "".join(pred.split()).casefold() == "".join(g.split()).casefold():
        return True
    # Punctuation-blind matching only for plain text: for math, "(1,2)" and "[1,2)" differ.
    if not re.search(r"[\d\\^_=<>()\[\]{}]", g) and normalize_text(g) and normalize_text(pred) == normalize_text(g):
        return True
    a, b = parse_exact_number(pred), parse_exact_number(g)
    if a is not None and b is not None:
        return a == b
    # math_verify's timeout uses SIGALRM, which only works in the main thread: off elsewhere.
    t = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_p = parse(f"${g}$", extraction_config=_GOLD_CFG, parsing_timeout=t)
        pred_p = parse(f"${pred}$", extraction_config=_GOLD_CFG, parsing_timeout=t)
        if not gold_p or not pred_p:
            return False
        return bool(verify(gold_p, pred_p, timeout_seconds=t))
    except Exception:  # math_verify/sympy raise on odd LaTeX; unparseable means not verified
        return False


# -- dispatch
def _aliases(task: Task) -> list[str]:
    return [str(a) for a in task.answer] if isinstance(task.answer, list) else [str(task.answer)]


def _rule(task: Task) -> str:
    suite = task.meta.get("suite")
    if suite in ("math", "search"):
        return suite
    if task.meta.get("metric") == "f1" or isinstance(task.answer, list):
        return "qa"
    return "math_or_text"


def score(task: Task, answer: str | None) -> float:
    """1.0/0.0, or the best token F1 over the aliases for QA tasks."""
    if answer is None:
        return 0.0
    if task.meta.get("scorer"):  # a user task set's own rule
        from score_distill.tasks.user_tasks import score_with_scorer

        return score_with_scorer(task, answer)
    if _rule(task) == "qa":
        pred = extract_answer(answer)
        return max(f1_score(pred, g) for g in _aliases(task))
    return 1.0 if is_correct(task, answer) else 0.0


def is_correct(task: Task, answer: str | None) -> bool:
    if answer is None:
        return False
    if task.meta.get("scorer"):
        return score(task, answer) >= 1.0
    rule = _rule(task)
    pred = extract_answer(answer)
    if rule == "math":
        want = parse_exact_number(str(task.answer))
        got = parse_exact_number(pred)
        return want is not None and got == want
    if rule in ("search", "qa"):
        return any(exact_match(pred, extract_answer(g)) for g in _aliases(task))
    return any(math_equal(pred, g) for g in _aliases(task))
