"""The oracle reads progress only from what a step showed, corrects only from what the student saw,
and blames the step the run never recovered from."""

from __future__ import annotations

from score_distill.tasks.knowledge_base import get_kb
from score_distill.tasks.registry import make_tasks
from score_distill.teachers.guards import check_teacher_step, leaks_answer
from score_distill.teachers.oracle import OracleTeacher, _progress_before, verified_progress
from score_distill.trajectory import Step, Task, ToolCall, Trajectory


def _math_task() -> Task:
    """Two dependent values, a small one (19) and a big one (3367), as the math suite writes them."""
    sol = [
        {"kind": "plan", "thought": "Compute A, then B from A.", "code": "", "value": ""},
        {"kind": "action", "thought": "First I compute A.", "code": "a = 9 + 10\nprint(a)", "value": "19", "var": "a"},
        {"kind": "action", "thought": "Next, B.", "code": "b = a * 177 + 4\nfinal_answer_print(b)", "value": "3367",
         "var": "b"},
    ]
    return Task(id="m19", question="A is 9 plus 10. B is A times 177, plus 4. What is B?", answer="3367",
                meta={"suite": "math", "solution": sol})


def _traj(task: Task, steps: list[Step]) -> Trajectory:
    final = next((s.final_answer for s in steps if s.final_answer is not None), None)
    outcome = "unfinished" if final is None else ("correct" if final == task.answer else "wrong")
    plan = Step(kind="plan", thought=task.meta["solution"][0]["thought"])
    return Trajectory(task=task, steps=[plan, *steps], final_answer=final, outcome=outcome)


def test_a_listing_of_numbers_shows_no_value():
    task = _math_task()
    listing = Step(code="print(list(range(10, 4000)))", observation=str(list(range(10, 4000))))
    tr = _traj(task, [listing, Step(code="final_answer_print(5)", observation="5", final_answer="5")])
    assert _progress_before(task, tr.steps, len(tr.steps)) == 0
    assert verified_progress(tr) == 0.0  # it was 1.0 when any printed number counted
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 2
    (prop,) = OracleTeacher().correct([tr], [v])
    assert prop.step.code == "a = 9 + 10\nprint(a)"  # the first value, not a step that builds on a "shown" 3367


def test_progress_advances_to_the_next_value_or_a_skip_that_cannot_be_chance():
    task = _math_task()
    assert _progress_before(task, _traj(task, [Step(code="print(a)", observation="19")]).steps, 2) == 1
    assert _progress_before(task, _traj(task, [Step(code="print(x)", observation="A = 19, B = 3367")]).steps, 2) == 2
    # Skipping to a big value is two operations in one step; a small later value matched by chance is not progress.
    assert _progress_before(task, _traj(task, [Step(code="print(x)", observation="3367")]).steps, 2) == 2
    swapped = task.model_copy(deep=True)
    swapped.meta["solution"][1]["value"], swapped.meta["solution"][2]["value"] = "3367", "19"
    assert _progress_before(swapped, _traj(swapped, [Step(code="print(x)", observation="19")]).steps, 2) == 0


def test_silent_wrong_step_is_the_critical_error_of_a_finished_run():
    task = _math_task()
    silent_wrong = Step(code="a = 9 + 11", observation="(no output)")
    tr = _traj(task, [silent_wrong, Step(code="b = a * 177 + 4\nprint(b)", observation="3544"),
                      Step(code="final_answer_print(b)", observation="3544", final_answer="3544")])
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 1 and "without showing" in v.analysis
    # It also bounds the verified progress: nothing after the unrecovered silent step counts.
    assert verified_progress(tr) == 0.0


def test_a_raising_step_is_the_error_unless_the_run_recovered():
    task = _math_task()
    raises = Step(code="a = 9 / 0", observation="ZeroDivisionError: division by zero", error="ZeroDivisionError")
    wrong_final = Step(code="final_answer_print(7)", observation="7", final_answer="7")
    (v,) = OracleTeacher().locate([_traj(task, [raises, wrong_final])])
    assert v.first_error_step == 1 and "ZeroDivisionError" in v.analysis
    recovered = _traj(task, [raises, Step(code="a = 9 + 10\nprint(a)", observation="19"), wrong_final])
    (v,) = OracleTeacher().locate([recovered])
    assert v.first_error_step == 3  # the failure was recovered from; the wrong answer is the error
    imports = _traj(task, [Step(code="import math", observation="(no output)"), wrong_final])
    assert OracleTeacher().locate([imports])[0].first_error_step == 2  # an import changes no value


def _search_task(h: int, seed: int = 1) -> tuple[Task, list[str], object]:
    task = make_tasks("search", 1, h, seed=seed)[0]
    return task, task.meta["chain"], get_kb(task.meta["kb_seed"])


def test_search_progress_needs_the_printed_result_and_corrections_name_only_what_was_seen():
    task, chain, kb = _search_task(1)
    result = kb.search(chain[0])
    assert chain[1] in kb.mentions(result)
    silent = Step(code=f"r = web_search({chain[0]!r})", observation="(no output)",
                  tool_calls=[ToolCall(name="web_search", args=[chain[0]], result=result)])
    wrong = Step(code="final_answer_print('Nobody')", observation="Nobody", final_answer="Nobody")
    tr = _traj(task, [silent, wrong])
    assert _progress_before(task, tr.steps, len(tr.steps)) == 0  # the raw result was never shown
    oracle = OracleTeacher()
    (v,) = oracle.locate([tr])
    assert v.first_error_step == 1  # the silent search, not the final answer
    (prop,) = oracle.correct([tr], [v])
    assert task.answer not in prop.step.code and task.answer not in prop.step.thought
    assert "web_search" in prop.step.code and "print(" in prop.step.code
    assert check_teacher_step(prop.step, task, tr.steps[:1]) is None
    # Blamed at the final step instead (the old rule), the correction would have been the answer itself:
    # the guard names that a leak, since no observation of the prefix showed it.
    leak = Step(thought="That answers it.", code=f"final_answer_print({task.answer!r})")
    assert leaks_answer(leak, task.answer, [s.observation for s in tr.steps[:2]], task.question)
    # Printed in a later step, the same result is seen, and then it counts.
    shown = _traj(task, [silent, Step(code="print(r)", observation=result)])
    assert _progress_before(task, shown.steps, len(shown.steps)) == 1


def test_reprinting_a_search_result_is_not_a_claim():
    task, chain, kb = _search_task(2, seed=3)
    r1, r2 = kb.search(chain[0]), kb.search(chain[1])
    assert kb.mentions(r1) - set(chain)  # the result lists distractors
    steps = [Step(code=f"r = web_search({chain[0]!r})\nprint(r)", observation=r1),
             Step(code="print(r)", observation=r1),
             Step(code=f"r2 = web_search({chain[1]!r})\nprint(r2)", observation=r2),
             Step(code="final_answer_print('Nobody')", observation="Nobody", final_answer="Nobody")]
    (v,) = OracleTeacher().locate([_traj(task, steps)])
    assert v.first_error_step == 4  # not the re-print at step 2
    off = sorted(kb.mentions(r1) - set(chain))[0]
    claim = steps[:1] + [Step(code=f"found = {off!r}\nprint(found)", observation=off)]
    (v,) = OracleTeacher().locate([_traj(task, claim)])
    assert v.first_error_step == 2 and off in v.analysis  # naming one wrong entity is a claim
