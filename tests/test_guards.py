"""Guards on teacher-written steps: answer leakage and correction talk (teachers/guards.py)."""

from __future__ import annotations

import json
import re

import pytest
from reference_data import REFERENCE_DATA

from score_distill.teachers.guards import (
    answer_forms,
    correction_phrase,
    extract_answer,
    leaks_answer,
    talks_about_correction,
)
from score_distill.trajectory import Step

EXAMPLES = REFERENCE_DATA / "examples"


def act(code: str, thought: str = "I compute it.") -> Step:
    return Step(kind="action", thought=thought, code=code, origin="teacher")


# ----------------------------------------------------------------------------- answer forms


def test_extract_answer_takes_the_last_boxed_and_unwraps_text():
    assert extract_answer("The water would boil in \\boxed{2} minutes.") == "2"
    assert extract_answer("\\boxed{\\text{Chicago Children's Choir}}") == "Chicago Children's Choir"
    assert extract_answer(" \\[ \\boxed{Fabian Nicieza} \\] ") == "Fabian Nicieza"
    assert extract_answer("(1) \\(\\boxed{\\dfrac{\\pi}{3}}\\). (2) \\(\\boxed{\\sqrt{3}}\\).") == "\\sqrt{3}"
    assert extract_answer("Paris") == "Paris"


def test_number_forms_compare_by_value():
    (f,) = answer_forms("\\boxed{1,680}")
    assert f.value == 1680 and f.distinctive
    assert f.occurs_in("total is 1680.0") and f.occurs_in("3360/2") and not f.occurs_in("16800")
    (half,) = answer_forms("\\boxed{\\dfrac{13}{2}}")
    assert half.value == 6.5 and half.occurs_in("max+min = 6.5") and half.occurs_in("\\frac{13}{2}")
    (small,) = answer_forms("\\boxed{2}")
    assert not small.distinctive


# ----------------------------------------------------------------------------- leaks


def test_hard_coded_final_answer_leaks_unless_seen_or_computed():
    ref = "\\boxed{1680}"
    q = "How many cube models with 8 distinct colours at the vertices, up to rotation?"
    assert leaks_answer(act('final_answer_print("\\\\boxed{1680}")'), ref, ["40320\n"], q)
    assert leaks_answer(act("final_answer_print(1680)"), ref, [], q)
    assert leaks_answer(act("n = 1680\nprint(n)"), ref, [], q)
    # seen in an observation of the prefix: copying it is fine
    assert not leaks_answer(act("final_answer_print(1680)"), ref, ["40320\n", "1680\n"], q)
    # computed by the code
    assert not leaks_answer(act("import math\nfinal_answer_print(math.factorial(8) // 24)"), ref, [], q)


def test_short_answers_only_count_in_result_positions():
    ref, q = "\\boxed{2}", "Find the length of the longest edge."
    assert not leaks_answer(act("y = x**2 + 3\nprint(y)"), ref, [], q)  # 2 inside arithmetic
    assert not leaks_answer(act("print(y)", thought="We square the side, which takes 2 steps."), ref, [], q)
    assert leaks_answer(act('final_answer_print("\\\\boxed{2}")'), ref, [], q)
    assert leaks_answer(act("edge = 2\nprint(edge)"), ref, [], q)
    # a value the question states is grounded
    assert not leaks_answer(act("final_answer_print(2)"), ref, [], "A square of side 2 is cut twice ...")


def test_numbers_that_are_operands_of_arithmetic_are_computation_not_a_leak():
    # Seen in a real teacher solve: ``n**0.5`` in a primality test, on a task whose answer is 1/2.
    half = "\\boxed{\\frac{1}{2}}"
    assert not leaks_answer(act("is_prime = all(n % i for i in range(2, int(n**0.5) + 1))"), half, [], "q")
    assert not leaks_answer(act("print(x**2)"), "\\boxed{2}", [], "q")
    assert not leaks_answer(act("print(side * -2)"), "-2", [], "q")
    # the number written as a result still leaks, and so does one in a string joined to others
    assert leaks_answer(act("p = 0.5\nprint(p)"), half, [], "q")
    assert leaks_answer(act('final_answer_print("\\\\boxed{" + "7" + "}")'), "7", [], "q")


def test_a_repeating_decimal_in_the_question_grounds_the_fraction_it_equals():
    # Seen in a real teacher solve: the question's decimal, written as a float, equals the answer 28/99.
    q = "Express .$\\overline{28}$ as a common fraction."
    assert not leaks_answer(act("x = 0.2828282828282828\nprint(100 * x - x)"), "\\frac{28}{99}", [], q)
    assert leaks_answer(act("x = 0.2828282828282828\nprint(100 * x - x)"), "\\frac{28}{99}", [], "Find x.")
    assert not leaks_answer(act("print(x)", thought="So x = 41/90."), "\\frac{41}{90}", [], "Write 0.4\\overline{5}.")


def test_distinctive_answers_count_anywhere_in_thought_or_literals():
    ref = "\\boxed{Adelaide}"
    q = "Where was the politician who represented the Goulburn electoral district born?"
    obs = ["Wendy Tuckerman is the member for Goulburn."]
    assert leaks_answer(act('web_search("Goulburn politician born in Adelaide")'), ref, obs, q)
    assert leaks_answer(Step(kind="plan", thought="The politician was born in Adelaide, so ..."), ref, obs, q)
    assert not leaks_answer(act('web_search("Goulburn politician birthplace")'), ref, obs, q)
    seen = [*obs, "... was born in Adelaide, South Australia"]
    assert not leaks_answer(act('final_answer_print("Adelaide")'), ref, seen, q)
    # words, not substrings: "Adelaide" is not in "Adelaide's"? it is (word boundary before the apostrophe)
    assert leaks_answer(act('print("Adelaide\'s hospital")'), ref, obs, q)
    assert not leaks_answer(act('print("Adelaidean")'), ref, obs, q)


def test_latex_answers_match_through_spacing_sizing_and_fstrings():
    ref = "The distance is \\boxed{\\left( \\dfrac{\\sqrt{5} - 1}{2} \\right) R}."
    code = 'final_answer_print(f"\\\\boxed{{\\\\left( \\\\dfrac{{\\\\sqrt{{5}} - 1}}{{2}} \\\\right) R}}")'
    assert leaks_answer(act(code), ref, ["[0, R*(-1/2 + sqrt(5)/2)]"], "Find the distance.")
    plan = Step(kind="plan", thought="Use the formula \\( t_c = \\frac{ab}{a+b} \\) directly.")
    assert leaks_answer(plan, "\\boxed{t_c = \\frac{ab}{a+b}}", [], "Find the bisector t_c when C = 120 degrees.")


def test_aliases_and_unparseable_code():
    refs = ["Paris", "City of Paris"]
    assert leaks_answer(act('final_answer_print("City of Paris"'), refs, [], "Capital of France?")  # syntax error
    assert not leaks_answer(act('r = web_search("capital of France")\nprint(r)'), refs, [], "Capital of France?")


# ----------------------------------------------------------------------------- correction talk

CORRECTION = [
    "To correct the mistake, I will recompute the sum.",
    "The previous step was wrong: the radius is half the diagonal.",
    "I made an error in the sign; let me fix it.",
    "Let me re-evaluate the critical points.",
    "Instead of the incorrect formula, I use the cap volume pi h^2 (3R - h) / 3.",
    "To solve this problem correctly, we need the rotational symmetries.",
    "The previous calculation did not correctly count the even positions.",
    "Based on the error analysis, the politician is someone else.",
    "Actually, the answer should use 24 symmetries.",
    "I need to reconsider the boundary conditions.",
]
NATURAL = [
    "The code raised a ZeroDivisionError because n can be 0, so I handle n = 0 separately.",
    "Option B is incorrect because the diode is silicon; I compare the remaining options.",
    "The previous search did not return the date, so I search for the father's name.",
    "The expansion shows the lowest power is z^5, so the order of the zero is 5.",
    "I will verify the solution by substituting it back into the equation.",
    "The second solution is the correct one because h must be positive.",
    "Now I sum the values printed above and submit the result.",
]


@pytest.mark.parametrize("thought", CORRECTION)
def test_correction_talk_is_flagged(thought):
    assert talks_about_correction(act("print(1)", thought=thought)), thought


@pytest.mark.parametrize("thought", NATURAL)
def test_natural_steps_pass(thought):
    assert not talks_about_correction(act("print(1)", thought=thought)), correction_phrase(act("", thought))


def test_code_comments_are_checked_too():
    assert talks_about_correction(act("# Re-evaluate the options\nprint(opts)", thought="I list the options."))


# ----------------------------------------------------------------------------- reference data

# Hand labels for the 65 teacher steps of the reference MPS examples (math then search, in file
# order). Labelled by reading each step: does it talk like a correction / does it write the
# reference answer as a literal it neither saw nor computed?
GOLD_CORRECTION = {4, 5, 8, 9, 11, 12, 16, 19, 20, 22, 31, 34, 42, 47, 53, 61}
GOLD_LEAK = {10, 19, 21, 33, 37, 40, 44, 61}


def _obs_from_context(ctx: str) -> list[str]:
    if not ctx or ctx == "None":
        return []
    return [re.split(r"\nStep \d+:\n", p)[0] for p in re.split(r"\nObservation: ", "\n" + ctx)[1:]]


def _reference_steps():
    rows = []
    for name in ("math", "search"):
        path = EXAMPLES / f"{name}_mps_trajectories.jsonl"
        for line in path.read_text().splitlines():
            r = json.loads(line)
            for rs in r.get("repair_steps") or []:
                t = rs["teacher_guided_step"]
                thought = re.sub(r"^\s*(First Thought|Thought)\s*:\s*", "", t["thought"])
                kind = "plan" if rs["mistake_step_index"] == 0 else "action"
                step = Step(kind=kind, thought=thought, code=t["code"] or "", origin="teacher")
                info = r["original_task_info"]
                rows.append((step, info["true_answer"], info["question"],
                             _obs_from_context(rs["context_before_intervention"])))
    return rows


@pytest.mark.skipif(not EXAMPLES.exists(), reason="reference data not present")
def test_guards_on_reference_teacher_steps():
    rows = _reference_steps()
    assert len(rows) == 65
    flagged = {i for i, (s, *_rest) in enumerate(rows) if talks_about_correction(s)}
    # The method notes "about a quarter" of the reference's teacher steps talk like corrections.
    assert 0.18 <= len(flagged) / len(rows) <= 0.32, len(flagged)
    tp = len(flagged & GOLD_CORRECTION)
    assert tp / len(flagged) >= 0.9 and tp / len(GOLD_CORRECTION) >= 0.85, (
        flagged - GOLD_CORRECTION, GOLD_CORRECTION - flagged)
    leaked = {i for i, (s, ans, q, obs) in enumerate(rows) if leaks_answer(s, ans, obs, q)}
    tp = len(leaked & GOLD_LEAK)
    assert tp / max(1, len(leaked)) >= 0.85 and tp / len(GOLD_LEAK) >= 0.85, (leaked - GOLD_LEAK, GOLD_LEAK - leaked)


# ----------------------------------------------------------------------------- one check for any teacher


def test_check_teacher_step_types_each_violation_and_grounds_in_the_prefix():
    from score_distill.teachers.guards import check_teacher_step
    from score_distill.trajectory import Task

    task = Task(id="t", question="What label does the Grolmo Orchestra record for?", answer="Stixnond Dynamics")
    submit = act("final_answer_print('Stixnond Dynamics')", "That answers the question.")
    unseen = [Step(kind="plan", thought="Search."), Step(code="r = web_search('the Grolmo Orchestra')",
                                                        observation="(no output)")]
    v = check_teacher_step(submit, task, unseen)
    assert v is not None and v.guard == "answer_leak" and v.reason().startswith("guard: answer_leak")
    seen = unseen[:1] + [unseen[1].model_copy(update={"observation": "It records for Stixnond Dynamics."})]
    assert check_teacher_step(submit, task, seen) is None
    talk = act("print(r)", "Let me fix the mistake and search again.")
    v = check_teacher_step(talk, task, seen)
    assert v is not None and v.guard == "correction_talk" and "fix" in v.detail
    assert v.model_dump(mode="json")["step"]["thought"] == talk.thought  # recorded with the step itself
