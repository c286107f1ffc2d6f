"""Checks on a teacher-written replacement step before it becomes training data.

Two defects of the reference pipeline (docs/method.md section 7) are caught here:

* **answer leakage**: the step writes the reference answer as a literal it never computed (the
  error analysis saw the reference answer, and some teacher steps simply copy it);
* **correction talk**: the step reads as a correction ("to correct the mistake", "re-evaluate"),
  which is bad SFT data because the student's own states never contain such a reviewer.

The leak rule, precisely. The reference answer is reduced to its *forms* (``\\boxed{}`` content,
``\\text{}`` unwrapped, LaTeX spacing dropped; for a number its value, so "1,680", "1680.0" and
``\\frac{3360}{2}`` all match 1680). A form is **grounded** when it already appears in the question
or in an observation of the verified prefix: writing down a value the agent has seen is not a
leak. An ungrounded form in the step is a leak when

1. it is *distinctive* (a number that is not a small integer, i.e. |x| >= 100 or not an integer,
   or a text/LaTeX answer of at least 4 characters) and appears anywhere in the thought or in a
   string/number literal of the code (``web_search("... born in Adelaide")`` counts); or
2. it is short (e.g. "2", "7", "A") and a literal in a *result position* of the code: an argument
   of ``final_answer_print``/``print``, or the whole right-hand side of an assignment
   (``answer = 7``). Short values in prose are everywhere and are never flagged.

A number that is an operand of arithmetic in the code (``x**2``, ``n**0.5``, ``price * 1.5``) is an
input of a computation, not a result written down, and is never a leak, whatever the answer.

Both guards run on every teacher's replacement steps, the built-in oracle's included: the LLM
teacher retries a step that fails them, and MPS (:func:`check_teacher_step`) checks whatever a
teacher proposes once more and records a violation instead of training on it.

They also run on a teacher's full solves, the trajectories behaviour cloning imitates
(:func:`check_teacher_solve`): correction talk on every step, the leak rule on every step but the
one that gives the final answer, each step against the observations before it. A solve ends by
stating its answer, so its answer step is not checked; an earlier step that writes the reference
answer before any observation showed it teaches the student to state a result it has not found.

Limits, stated: a multiple-choice letter or any answer that the question itself contains is
always grounded (choosing it is the reasoning, and no literal check can tell knowledge from a
leak); the main defence there is that the step writer never sees the reference answer.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict

from score_distill.agent.format import FINAL_ANSWER_FN
from score_distill.trajectory import Step, Task, Trajectory

# --------------------------------------------------------------------------- answer forms

_BOXED = re.compile(r"\\boxed\s*\{")
_NUM = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
_FRAC_LATEX = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*([-+]?\d+)\s*\}")
_FRAC_SLASH = re.compile(r"(?<![\w.])([-+]?\d+)\s*/\s*(\d+)(?![\w.])")
_REPEATING = re.compile(r"(?<![\w.])(\d*)\.(\d*)\$?\s*\\overline\s*\{(\d+)\}")  # 0.4\overline{5}, .$\overline{28}$
_SMALL_INT = 100


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group that opens just before ``start`` (balanced)."""
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def extract_answer(reference: str) -> str:
    """The answer proper: the last ``\\boxed{...}`` content if any, else the stripped text."""
    last = None
    for m in _BOXED.finditer(reference):
        inner = _braced(reference, m.end())
        if inner is not None:
            last = inner
    text = last if last is not None else reference
    text = re.sub(r"\\text\s*\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"^\s*(\\\[|\$+)|(\\\]|\$+)\s*$", "", text.strip())
    return text.strip().rstrip(".").strip()


def _latex_key(text: str) -> str:
    """Spacing- and sizing-insensitive form of LaTeX/maths text, lower case."""
    t = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    t = re.sub(r"\\(left|right|displaystyle|,|;|!|quad)", "", t)
    t = t.replace("\\\\", "\\")  # code literals often double the backslash
    return re.sub(r"\s+", "", t).lower()


def _text_key(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _number_value(text: str) -> float | None:
    """The value of ``text`` when the whole of it is one number (int, decimal, fraction)."""
    t = text.strip().replace("$", "")
    m = _FRAC_LATEX.fullmatch(t) or _FRAC_SLASH.fullmatch(t)
    if m:
        den = float(m.group(2))
        return float(m.group(1)) / den if den else None
    if _NUM.fullmatch(t):
        return float(t.replace(",", ""))
    return None


def numbers_in(text: str) -> set[float]:
    """Every number value written in ``text`` (integers, decimals, a/b and \\frac{a}{b})."""
    vals = {float(m.group(0).replace(",", "")) for m in _NUM.finditer(text)}
    for rx in (_FRAC_LATEX, _FRAC_SLASH):
        for m in rx.finditer(text):
            if float(m.group(2)):
                vals.add(float(m.group(1)) / float(m.group(2)))
    for m in _REPEATING.finditer(text):  # a repeating decimal is the fraction it equals
        whole, fixed, rep = m.group(1) or "0", m.group(2), m.group(3)
        vals.add(float(Fraction(f"{whole}.{fixed or 0}") + Fraction(int(rep), 10 ** len(fixed) * (10 ** len(rep) - 1))))
    return vals


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


@dataclass(frozen=True)
class AnswerForm:
    """One accepted answer, reduced for literal matching."""

    text: str  # extracted answer, e.g. "1680", "Chicago Children's Choir", "t_c = \\frac{ab}{a+b}"
    value: float | None  # numeric value when the answer is a single number
    latex: bool  # compare with spacing removed (maths) rather than as words

    @property
    def distinctive(self) -> bool:
        if self.value is not None:
            return not (float(self.value).is_integer() and abs(self.value) < _SMALL_INT)
        return len(_latex_key(self.text) if self.latex else _text_key(self.text)) >= 4

    def occurs_in(self, text: str) -> bool:
        if not text:
            return False
        if self.value is not None:
            return any(_same(v, self.value) for v in numbers_in(text))
        if self.latex:
            return _latex_key(self.text) in _latex_key(text)
        key = re.escape(_text_key(self.text))
        return re.search(rf"(?<!\w){key}(?!\w)", _text_key(text)) is not None


def answer_forms(reference_answer: str | Iterable[str]) -> list[AnswerForm]:
    refs = [reference_answer] if isinstance(reference_answer, str) else list(reference_answer)
    forms = []
    for ref in refs:
        text = extract_answer(ref)
        if not text:
            continue
        value = _number_value(text)
        latex = value is None and bool(re.search(r"[\\^_{}=]", text))
        forms.append(AnswerForm(text, value, latex))
    return forms


# --------------------------------------------------------------------------- code literals


def _literal_text(node: ast.AST) -> str | None:
    if (isinstance(node, ast.Constant) and isinstance(node.value, str | int | float)
            and not isinstance(node.value, bool)):
        return str(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _literal_text(node.operand)
        return "-" + inner if inner is not None else None
    if isinstance(node, ast.JoinedStr):  # f"\\boxed{{1680}}": the constant parts are the literal
        return "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
    return None


def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool)


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def code_literals(code: str) -> tuple[list[str], list[str]]:
    """(all literals, literals in a result position) of ``code``; regex fallback if it won't parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        lits = re.findall(r"(['\"])(.*?)\1", code)
        return [s for _, s in lits] + _NUM.findall(code), []
    # A number that is an operand of arithmetic (``n**0.5``, ``x * 2``) is an input of a computation, not a
    # result written down; string operands stay ("\\boxed{" + "7" + "}" writes 7).
    operands: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            for side in (node.left, node.right):
                if _is_number(side):
                    operands.update(id(n) for n in ast.walk(side))
    every: list[str] = []
    result: list[str] = []
    for node in ast.walk(tree):
        lit = _literal_text(node) if id(node) not in operands else None
        if lit is not None and not isinstance(node, ast.UnaryOp):
            every.append(lit)
        if isinstance(node, ast.Call) and _call_name(node) in (FINAL_ANSWER_FN, "print"):
            for arg in node.args:
                for sub in ast.walk(arg):  # final_answer_print("\\boxed{" + "7" + "}") too
                    t = _literal_text(sub) if id(sub) not in operands else None
                    if t is not None:
                        result.append(t)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            t = _literal_text(node.value)
            if t is not None:
                result.append(t)
    return every, result


# --------------------------------------------------------------------------- the guards


def leaks_answer(
    step: Step,
    reference_answer: str | Iterable[str],
    prefix_observations: Iterable[str],
    question: str = "",
) -> bool:
    """True when the step writes the reference answer as a literal it has not seen or computed.

    See the module docstring for the rule. ``question`` grounds answers the task itself states.
    """
    seen = "\n".join([question, *prefix_observations])
    every, result = code_literals(step.code) if step.code else ([], [])
    for form in answer_forms(reference_answer):
        if form.occurs_in(seen):
            continue
        if form.distinctive:
            if form.occurs_in(step.thought) or any(form.occurs_in(lit) for lit in every):
                return True
        elif any(_short_match(form, lit) for lit in result):
            return True
    return False


def _short_match(form: AnswerForm, literal: str) -> bool:
    """A short answer in a result literal: the whole literal, or its \\boxed{} content."""
    inner = extract_answer(literal)
    if form.value is not None:
        v = _number_value(inner)
        return v is not None and _same(v, form.value)
    key = _latex_key if form.latex else _text_key
    cand = key(inner)
    # "E. Adventitious" answers option E: a leading option letter counts as the answer.
    return cand == key(form.text) or re.match(rf"{re.escape(key(form.text))}[.):]\s", cand + " ") is not None


# Phrases that only a reviewer or a self-correcting agent writes. Each group is kept narrow so
# that ordinary steps ("the code raised an error", "option B is incorrect because ...",
# "the previous search did not confirm it") pass.
_CORRECTION_PATTERNS = [
    # explicit mistakes / errors of the agent
    r"\bmistak(e|es|en|enly)\b",
    r"\b(i|we)\s+(have\s+)?(made|make)\s+(an?\s+)?(error|mistake|oversight)",
    r"\b(my|our|this|that|the)\s+(earlier\s+|previous\s+)?(error|oversight|misunderstanding|misinterpretation)\s+(was|is|in|occurred|lies)\b",
    r"\berror\s+(analysis|occurred)\b",
    r"\b(i|we)\s+(was|were)\s+wrong\b",
    # fixing
    r"\b(correct|fix|rectify|amend)(ing)?\s+(the|this|that|my|our|these|those|an?)\s+(\w+\s+)?(mistake|error|issue|problem|bug|oversight|calculation|approach|step|misunderstanding|logic)s?\b",
    r"\b(let\s+me|let's|i\s+will|i'll|we\s+will|we'll|i\s+need\s+to|we\s+need\s+to)\s+(fix|correct)\b",
    r"\bto\s+correct\s+(this|that|it)\b",
    # a previous step being wrong
    r"\b(previous|earlier|prior|last|above|original|initial|first)\s+(\w+\s+){0,2}(step|steps|approach|calculation|logic|reasoning|attempt|code|answer|result|assumption|analysis|solution|method|interpretation)\s+(was|were|is|did\s+not|didn't|had|has|failed|contained|incorrectly)\b[^.]{0,40}\b(wrong|incorrect|not\s+correct|flawed|mistaken|erroneous|inaccurate|correctly|properly|error|fail)",
    r"\binstead\s+of\s+(the\s+|my\s+|our\s+)?(incorrect|wrong|erroneous|flawed|mistaken|previous)\b",
    r"\b(incorrectly|wrongly|erroneously)\s+(assumed|calculated|computed|identified|applied|used|interpreted|set|counted)\b",
    # redoing
    r"\bre-?(evaluat|examin|consider|assess|think|visit|do)\w*",
    r"\b(solve|do|handle|approach)\s+(\w+\s+){0,3}correctly\b",
    r"\bto\s+(\w+\s+)?correctly\b",
    r"\bcorrectly\s+this\s+time\b",
    r"\bthe\s+correct\s+(formula|relationship|approach|method|way|interpretation|expression|equation|condition|criteri\w+)\b",
    r"\bcorrect\b[^.\n]{0,60}\bshould\s+be\b",
    # talking about the reviewer
    r"\b(error\s+analysis|correction\s+suggestion|the\s+suggestion|as\s+suggested|the\s+feedback|the\s+reviewer|reference\s+answer|expected\s+answer|ground\s+truth)\b",
    # the writer speaking as the teacher ("As the teacher, ..."); "the teacher gives each pupil" in a word
    # problem passes: only the role followed by a comma, or the teacher's own feedback, counts
    r"\bas\s+(the|your|a)\s+(teacher|mentor|tutor|reviewer)\s*,",
    r"\b(teacher|mentor|tutor)'?s?\s+(correction|suggestion|hint|feedback|guidance)\b",
    r"(^|[.!?]\s+)(wait|actually|oops|on\s+second\s+thought|upon\s+(further\s+)?(reflection|review))\b",
    r"\bapolog",
]
_CORRECTION_RX = re.compile("|".join(f"(?:{p})" for p in _CORRECTION_PATTERNS), re.I)


def correction_phrase(step: Step) -> str | None:
    """The first correction phrase in the step's thought or code comments, or None."""
    comments = "\n".join(line.split("#", 1)[1] for line in step.code.splitlines() if "#" in line)
    for text in (step.thought, comments):
        m = _CORRECTION_RX.search(text or "")
        if m:
            return m.group(0)
    return None


def talks_about_correction(step: Step) -> bool:
    """True when the step reads as a correction of an earlier mistake rather than a natural step."""
    return correction_phrase(step) is not None


# --------------------------------------------------------------------------- one check for any teacher

GuardKind = Literal["answer_leak", "correction_talk"]


class GuardViolation(BaseModel):
    """A teacher step that failed a guard: recorded with the MPS record, never trained on."""

    model_config = ConfigDict(extra="forbid")

    guard: GuardKind
    detail: str
    step_index: int | None = None  # MPS: the position the step would have replaced; a solve: the step's (0-based)
    teacher: str = ""
    step: Step | None = None

    def reason(self) -> str:
        return f"guard: {self.guard}: {self.detail}"


def check_teacher_step(step: Step, task: Task, prefix: list[Step]) -> GuardViolation | None:
    """Both guards on a teacher's step written after ``prefix`` (the observations the student saw)."""
    if leaks_answer(step, task.answer, [s.observation for s in prefix], task.question):
        return GuardViolation(guard="answer_leak", detail="writes the reference answer, which the prefix never showed",
                              step=step)
    phrase = correction_phrase(step)
    if phrase:
        return GuardViolation(guard="correction_talk", detail=f"reads as a correction ({phrase!r})", step=step)
    return None


def check_teacher_solve(traj: Trajectory, teacher: str = "") -> GuardViolation | None:
    """The guards on a teacher's full solve: the first step that fails one, or None.

    Each step is checked against the question and the observations of the steps before it. The step that
    gives the final answer may state it (it is the solve's conclusion), so the leak rule skips it; correction
    talk is checked on every step, since the student imitates every one."""
    task = traj.task
    for i, step in enumerate(traj.steps):
        answers = step.final_answer is not None
        if not answers and leaks_answer(step, task.answer, [s.observation for s in traj.steps[:i]], task.question):
            return GuardViolation(guard="answer_leak", step_index=i, teacher=teacher, step=step,
                                  detail=f"step {i} writes the reference answer before any observation showed it")
        phrase = correction_phrase(step)
        if phrase:
            return GuardViolation(guard="correction_talk", step_index=i, teacher=teacher, step=step,
                                  detail=f"step {i} reads as a correction ({phrase!r})")
    return None
