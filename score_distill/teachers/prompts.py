"""The LLM teacher's three prompts: solve a task, locate the first critical error, write one step.

Written for a strong instruction-following model (72B class). Information flow is deliberate
(docs/method.md section 7): only the *locator* sees the reference answer. The *step writer* does
not: it gets the question, the verified prefix, the student's step that went wrong and the
locator's analysis and suggestion with every sentence that states or mentions the reference answer
removed (:func:`scrub_answer`). A writer that never sees the answer cannot copy it; the guards in
:mod:`score_distill.teachers.guards` catch what still slips through the analysis.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from score_distill.agent import format as fmt
from score_distill.teachers.guards import answer_forms
from score_distill.trajectory import Step, Task

Chat = list[dict[str, str]]

# ----------------------------------------------------------------------------- (a) solving

SOLVE_GUIDANCE = """Guidance:
- Your first reply is the plan: the approach only, no numbers worked out, no code.
- Then take one small step per reply: a short thought, then code that does that step and prints what it found.
- Compute every value with code or read it from an observation; never write a result you have not seen printed.
- If an observation shows an error or an unexpected value, look into it in the next step.
- Math answers: call final_answer_print with the exact value in LaTeX, \
e.g. final_answer_print(r"\\boxed{\\frac{3}{4}}").
- Questions needing facts: search, read the results, and answer with the short entity, date or number asked for."""


def solve_system_prompt(tools: Iterable[str]) -> str:
    """The agent system prompt (agent/format.py) with the teacher's guidance appended."""
    return fmt.system_prompt(list(tools), extra=SOLVE_GUIDANCE)


# ----------------------------------------------------------------------------- (b) locating

LOCATE_SYSTEM = """You review the work of an AI agent that solves tasks step by step by writing Python code.
Step 1 is the agent's plan. Every later step is a thought, the code it ran and the observation (what the code printed).
You are given the task, its reference answer and the agent's steps. The agent's result is wrong.
Find the FIRST CRITICAL ERROR: the earliest step after which the agent can no longer reach the reference answer
without undoing that step. Typical critical errors: a wrong plan or formula, a misread question, a wrong value
computed or copied, a wrong conclusion drawn from an observation, a bad search query that sends the agent off course,
answering before the work supports it, a wrong final answer. A step that only looks clumsy is not critical if the
agent could still succeed from there.
Reply with one JSON object and nothing else:
{"is_correct": false, "error_analysis": "<what is wrong in that step and why>", \
"first_error_step": <step number, 1-based; step 1 is the plan>, \
"suggestion": "<what a good version of that step would do instead, as an approach>"}
Use "first_error_step": -1 only when no step can be blamed (e.g. the task cannot be solved with the tools)."""

LOCATE_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "is_correct": {"type": "boolean"},
        "error_analysis": {"type": "string"},
        "first_error_step": {"type": "integer"},
        "suggestion": {"type": "string"},
    },
    "required": ["is_correct", "error_analysis", "first_error_step", "suggestion"],
    "additionalProperties": False,
}


def _answer_text(answer: str | list[str]) -> str:
    return answer if isinstance(answer, str) else " | ".join(answer)


def render_steps(steps: list[Step], start: int = 1, max_obs_chars: int = 2000) -> str:
    """Numbered steps with thought, code and observation, as the reviewer and writer read them."""
    out = []
    for i, s in enumerate(steps, start=start):
        if s.kind == "plan":
            out.append(f"Step {i} (plan):\n{s.thought.strip()}")
            continue
        obs = s.observation if len(s.observation) <= max_obs_chars else s.observation[:max_obs_chars] + "\n[... cut]"
        if s.error:
            obs += f"\n[execution error: {s.error}]"
        out.append(f"Step {i}:\nThought: {s.thought.strip()}\n"
                   f"Code:\n```python\n{s.code.strip()}\n```\nObservation: {obs}")
    return "\n\n".join(out)


def locate_chat(task: Task, steps: list[Step], final_answer: str | None) -> Chat:
    outcome = (
        f"The agent's final answer was {final_answer!r}, which is wrong."
        if final_answer is not None
        else "The agent stopped without giving a final answer (step limit or failure); that counts as wrong."
    )
    user = (
        f"Task:\n{task.question}\n\nReference answer: {_answer_text(task.answer)}\n\n"
        f"Agent's steps ({len(steps)} in total):\n\n{render_steps(steps)}\n\n{outcome}\n"
        f"Give the JSON object: first_error_step must be between 1 and {len(steps)}, or -1."
    )
    return [{"role": "system", "content": LOCATE_SYSTEM}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------- (c) writing one step

WRITE_SYSTEM = """You write one step of an AI agent that solves tasks step by step by writing Python code.
You receive the task, the agent's steps so far (each verified to be sound), the step the agent wrote next, and a
reviewer's note on what is wrong with that step. Write a better step to take its place.
Rules:
- Write the step exactly as the agent would write it if it had thought of the better approach itself: a natural
  next step. Never mention mistakes, errors, corrections, a reviewer, a previous attempt or "re-evaluating".
- Do only this one step. Do not write observations, do not continue past the step.
- Every value must come from the task, from an earlier observation, or be computed by the code. Never write a
  result you have not seen printed; never pass a literal you did not compute to final_answer_print.
- Variables defined by the steps so far still exist in the interpreter; those of the step you replace do not.
"""

WRITE_PLAN_FORMAT = """This is the agent's first step: the plan. \
Write the approach only, no numbers worked out and no code:
<first_thought>the plan</first_thought>"""

WRITE_ACTION_FORMAT = """Write one thought and one block of code that does this step and prints what it finds:
<thought>what this step does and why</thought>
<code>
python code
</code>"""

RETRY_LEAK = (
    "Your step wrote a result as a literal instead of computing it or reading it from an observation. "
    "Write the step again so that its code computes the value (or searches for it) and prints it."
)
RETRY_CORRECTION = (
    "Your step talks about fixing or re-checking earlier work. Write it again as a natural next step, "
    "with no mention of mistakes, errors, corrections or re-evaluation."
)
RETRY_FORMAT = "Your reply did not follow the format. Reply with exactly one step in the format asked for."

_REVEALING = re.compile(
    r"\b(reference|expected|correct|right|true|actual|final)\s+(answer|result|value|solution)\b"
    r"|\bground[- ]truth\b",
    re.I,
)
# A sentence ends at . ! ? before a capital ("8! by 24" is a factorial, not an end).
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[])|\n+")


def scrub_answer(text: str, reference_answer: str | list[str]) -> str:
    """Drop every sentence of ``text`` that states the reference answer or talks about it.

    Dropping the sentence, not just the literal, because "the correct answer is ___" still tells
    the writer where to aim; the reasoning sentences around it are what the writer needs.
    """
    if not text:
        return ""
    forms = answer_forms(reference_answer)
    kept = []
    for sentence in _SENTENCE.split(text):
        if not sentence.strip():
            continue
        if _REVEALING.search(sentence) or any(f.occurs_in(sentence) for f in forms):
            continue
        kept.append(sentence.strip())
    return " ".join(kept)


def write_step_chat(
    task: Task,
    prefix: list[Step],
    wrong: Step,
    analysis: str,
    suggestion: str,
) -> Chat:
    """The step writer's request. ``analysis``/``suggestion`` must already be scrubbed."""
    k = len(prefix)
    parts = [f"Task:\n{task.question}"]
    parts.append(f"Steps so far:\n\n{render_steps(prefix)}" if prefix else "No steps yet.")
    parts.append(f"The step the agent wrote next (step {k + 1}), which you replace:\n\n"
                 f"{render_steps([wrong], start=k + 1)}")
    note = " ".join(x for x in (analysis.strip(), suggestion.strip()) if x)
    if note:
        parts.append(f"Reviewer's note on that step: {note}")
    parts.append(WRITE_PLAN_FORMAT if k == 0 else WRITE_ACTION_FORMAT)
    tools = "\n".join(f"- {fmt.TOOL_DOCS.get(t, t)}" for t in task.tools)
    system = WRITE_SYSTEM + f"Tools the code can call:\n{tools}"
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def retry_chat(chat: Chat, reply: str, instruction: str) -> Chat:
    """The same request once more, showing the rejected reply and why it was rejected."""
    return [*chat, {"role": "assistant", "content": reply}, {"role": "user", "content": instruction}]
