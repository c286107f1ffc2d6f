"""The CodeAct turn format: how steps are written by models and read back.

The tags follow the SCoRe reference implementation (``<first_thought>``, ``<thought>``, ``<code>``)
so its data converts both ways without loss. Step 1 is a plan (no code); later steps are thought +
code; an episode ends when the code calls ``final_answer_print(...)``.

The parser never raises on model output: small students emit broken actions all the time, so it
recovers what it can and lists what was wrong in ``format_errors`` (a metric, not an exception).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PLAN_OPEN, PLAN_CLOSE = "<first_thought>", "</first_thought>"
THOUGHT_OPEN, THOUGHT_CLOSE = "<thought>", "</thought>"
CODE_OPEN, CODE_CLOSE = "<code>", "</code>"
OBSERVATION_PREFIX = "Observation: "
PLAN_OBSERVATION = "None"
FINAL_ANSWER_FN = "final_answer_print"

# Stop strings for generation backends that support them: a model that starts writing its own
# observation has finished its action.
STOP_STRINGS = ["</code>", "\nObservation:"]
PLAN_STOP_STRINGS = ["</first_thought>"]

TOOL_DOCS = {
    "python": "The Python interpreter itself: variables persist between your steps; use print() to see values.",
    "web_search": (
        "web_search(query: str) -> str: searches the document collection and returns the top results as text."
    ),
    "final_answer_print": "final_answer_print(answer): submits your final answer and ends the task.",
}

SYSTEM_PROMPT_TEMPLATE = """You are an expert assistant who solves tasks by writing Python code.
Work step by step. Your first reply is a plan only, no calculations and no code:
<first_thought>your plan</first_thought>
Every later reply is one thought and one block of code:
<thought>what you will do now and why</thought>
<code>
python code
</code>
After each reply you receive "Observation:" with what your code printed. Use print() to see results.
Available tools (call them from your code):
{tools}
When you know the answer, call final_answer_print(answer) in your code.{extra}"""


def system_prompt(tools: list[str] | tuple[str, ...] = ("python", "final_answer_print"), extra: str = "") -> str:
    lines = "\n".join(f"- {TOOL_DOCS.get(t, t)}" for t in tools)
    return SYSTEM_PROMPT_TEMPLATE.format(tools=lines, extra=("\n" + extra) if extra else "")


def render_plan(thought: str) -> str:
    return f"{PLAN_OPEN}{thought.strip()}{PLAN_CLOSE}"


def render_action(thought: str, code: str) -> str:
    return f"{THOUGHT_OPEN}{thought.strip()}{THOUGHT_CLOSE}\n{CODE_OPEN}\n{code.strip()}\n{CODE_CLOSE}"


def render_observation(observation: str) -> str:
    return OBSERVATION_PREFIX + observation


@dataclass
class ParsedStep:
    kind: str  # "plan" | "action"
    thought: str
    code: str = ""
    format_errors: list[str] = field(default_factory=list)

    @property
    def calls_final_answer(self) -> bool:
        return calls_final_answer(self.code)


_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.S)
_FINAL_CALL = re.compile(r"(?<![\w.])" + FINAL_ANSWER_FN + r"\s*\(")


def calls_final_answer(code: str) -> bool:
    return bool(_FINAL_CALL.search(code or ""))


def _between(text: str, open_tag: str, close_tag: str, errors: list[str], stop_at: tuple[str, ...] = ()) -> str | None:
    """Content of open_tag...close_tag; tolerate a missing close tag (cut at stop_at or end)."""
    start = text.find(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    if end < 0:
        errors.append(f"unclosed {open_tag}")
        cut = [text.find(s, start) for s in stop_at]
        cut = [c for c in cut if c >= 0]
        end = min(cut) if cut else len(text)
    return text[start:end]


def _cut_hallucinated_observation(text: str, errors: list[str]) -> str:
    m = re.search(r"\n\s*Observation\s*:", text)
    if m:
        errors.append("wrote its own Observation")
        return text[: m.start()]
    return text


def parse_plan(text: str) -> ParsedStep:
    errors: list[str] = []
    text = _cut_hallucinated_observation(text or "", errors)
    plan = _between(text, PLAN_OPEN, PLAN_CLOSE, errors)
    if plan is None:
        # Accept a plan written with the action tag, or untagged prose.
        plan = _between(text, THOUGHT_OPEN, THOUGHT_CLOSE, errors, stop_at=(CODE_OPEN, "```"))
        errors.append(f"missing {PLAN_OPEN}")
        if plan is None:
            plan = text
    if CODE_OPEN in text or "```" in text:
        errors.append("code in plan step (ignored)")
        plan = plan.split(CODE_OPEN)[0].split("```")[0]
    plan = plan.strip()
    if not plan:
        errors.append("empty plan")
    return ParsedStep("plan", plan, "", errors)


def parse_action(text: str) -> ParsedStep:
    errors: list[str] = []
    text = _cut_hallucinated_observation(text or "", errors)
    thought = _between(text, THOUGHT_OPEN, THOUGHT_CLOSE, errors, stop_at=(CODE_OPEN, "```"))
    code = _between(text, CODE_OPEN, CODE_CLOSE, errors)
    if code is not None:
        close = text.find(CODE_CLOSE)
        if close >= 0 and text[close + len(CODE_CLOSE):].strip():
            errors.append("text after </code> (ignored)")
        if text.count(CODE_OPEN) > 1:
            errors.append("several <code> blocks (first one used)")
        inner = _FENCE.search(code)
        if inner:  # a fence inside <code>: keep only the fenced part
            code = inner.group(1)
    else:
        fence = _FENCE.search(text)
        if fence:
            errors.append("code in a markdown fence instead of <code>")
            code = fence.group(1)
        else:
            errors.append("no code block")
            code = ""
    if thought is None:
        errors.append(f"missing {THOUGHT_OPEN}")
        # Prose before the code is the thought.
        idx = [i for i in (text.find(CODE_OPEN), text.find("```")) if i >= 0]
        thought = text[: min(idx)] if idx else ("" if code else text)
        thought = re.sub(r"^\s*(Thought|First Thought)\s*:\s*", "", thought.strip())
    return ParsedStep("action", thought.strip(), code.strip("\n"), errors)


def parse_step(text: str, *, is_first: bool) -> ParsedStep:
    return parse_plan(text) if is_first else parse_action(text)
