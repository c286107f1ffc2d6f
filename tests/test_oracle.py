"""Oracle teacher: first-critical-error location at every position, correction, solve()."""

from __future__ import annotations

import random
import re

import pytest

from score_distill.tasks.knowledge_base import get_kb
from score_distill.tasks.registry import make_tasks, tools_for
from score_distill.tasks.scoring import is_correct
from score_distill.tasks.search_suite import QUOTE
from score_distill.teachers.base import Teacher
from score_distill.teachers.oracle import OracleTeacher, _progress_before
from score_distill.trajectory import Step, Task, ToolCall, Trajectory

try:
    from score_distill.sandbox import Sandbox, SandboxConfig, SandboxPool

    HAVE_SANDBOX = True
except ImportError:  # pragma: no cover - the sandbox lands separately
    HAVE_SANDBOX = False

needs_sandbox = pytest.mark.skipif(not HAVE_SANDBOX, reason="score_distill.sandbox not importable yet")


def _actions(task: Task) -> list[dict]:
    return [s for s in task.meta["solution"] if s["kind"] == "action"]


def _other_entity(task: Task, near: str, rng: random.Random) -> str:
    """An entity off the question's chain: the twin of ``near`` when it has one (the hard case)."""
    kb = get_kb(task.meta["kb_seed"])
    twin = kb.entities[near].twin
    if twin and twin not in task.meta["chain"]:
        return twin
    same = [n for n in kb.by_type[kb.entities[near].type] if n not in task.meta["chain"]]
    return rng.choice(same)


def injected(task: Task, pos: int, rng: random.Random) -> list[Step]:
    """Steps (code only) whose first critical error is at ``pos`` (0 = plan), errors propagating."""
    plan = task.meta["solution"][0]["thought"]
    acts = _actions(task)
    steps = [Step(kind="plan", thought=plan)]
    if task.meta["suite"] == "math":
        wrong_at = max(pos, 1)  # a wrong plan is followed by its wrong first computation
        if pos == 0:
            num = re.findall(r"\d{2,}", plan)[0]  # a quantity of the question, misread in the plan
            steps[0] = Step(kind="plan", thought=plan.replace(num, str(int(num) * 10 + 3), 1))
        for j, a in enumerate(acts, 1):
            code = a["code"]
            if j == wrong_at:  # the value this step stores (and prints) is off by one
                code = re.sub(rf"^({a['var']} = .*)$", r"\1 + 1", code, count=1, flags=re.M)
            steps.append(Step(thought=a["thought"], code=code))
        return steps
    chain, rels = task.meta["chain"], task.meta["relations"]
    kb = get_kb(task.meta["kb_seed"])
    H = len(rels)
    if pos == 0:
        steps[0] = Step(kind="plan", thought=plan.replace(chain[0], _other_entity(task, chain[0], rng)))
    wrong_from = 1 if pos == 0 else pos
    cur = chain[0]
    for j in range(1, H + 1):
        if j == wrong_from and j <= H:
            cur = _other_entity(task, chain[j - 1], rng)
        elif j < wrong_from:
            cur = chain[j - 1]
        steps.append(Step(thought=f"I search for {cur}.", code=f"r = web_search({cur!r})\nprint(r)"))
        if j >= wrong_from:
            cur = kb.entities[cur].facts.get(rels[j - 1]) or cur  # follow the wrong entity's own relation
    final = cur if wrong_from <= H else _other_entity(task, chain[-1], rng)
    steps.append(Step(thought="That is the answer.", code=f"final_answer_print({final!r})"))
    return steps


def execute(task: Task, steps: list[Step], sb) -> Trajectory:
    """Run each action for real; stop at the final answer, as the agent loop does."""
    tr = Trajectory(task=task)
    for s in steps:
        if s.kind == "action":
            r = sb.run(s.code)
            s = s.model_copy(update={"observation": r.observation, "error": r.error, "tool_calls": list(r.tool_calls),
                                     "final_answer": r.final_answer})
        tr.steps.append(s)
        if s.final_answer is not None:
            tr.final_answer = s.final_answer
            break
    if tr.final_answer is None:
        tr.outcome = "unfinished"
    else:
        tr.outcome = "correct" if is_correct(task, tr.final_answer) else "wrong"
    return tr


@pytest.fixture(scope="module")
def pool():
    if not HAVE_SANDBOX:
        pytest.skip("no sandbox")
    p = SandboxPool(SandboxConfig(), max_workers=2)
    yield p
    p.close()


def test_oracle_is_a_teacher():
    assert isinstance(OracleTeacher(), Teacher)


@needs_sandbox
@pytest.mark.parametrize("suite", ["math", "search"])
@pytest.mark.parametrize("horizon", [1, 4, 8])
def test_locate_finds_injected_error_at_every_position_and_correction_recovers(suite, horizon, pool):
    oracle = OracleTeacher(pool)
    rng = random.Random(horizon)
    checked = 0
    for task in make_tasks(suite, 3, horizon, seed=7):
        n_actions = len(_actions(task))
        for pos in range(0, n_actions + 1):  # plan, every action, the final answer
            steps = injected(task, pos, rng)
            with pool.new(tools=tools_for(task)) as sb:
                tr = execute(task, steps, sb)
            if tr.outcome == "correct":  # the injected error happened to cancel out; nothing to find
                continue
            checked += 1
            (v,) = oracle.locate([tr])
            assert not v.is_correct and v.failure is None
            assert v.first_error_step == pos, (task.id, pos, v.analysis, [s.observation[:80] for s in tr.steps])
            (prop,) = oracle.correct([tr], [v])
            new = prop.step
            assert new is not None and new.origin == "teacher"
            assert new.kind == ("plan" if pos == 0 else "action")
            assert not re.search(r"mistake|correct(ing|ion)|wrong|error", new.thought, re.I)
            # Rebuild the state from the verified prefix, run the teacher step, continue with the solution.
            prefix = tr.steps[:pos]
            with pool.new(tools=tools_for(task)) as sb:
                sb.replay(prefix)
                cont = execute(task, [new], sb)
                final = cont.final_answer
                if final is None:
                    progress = _progress_before(task, prefix + cont.steps, pos + 1)
                    rest = [Step(thought=a["thought"], code=a["code"]) for a in _actions(task)[progress:]]
                    final = execute(task, rest, sb).final_answer
            assert is_correct(task, final), (task.id, pos, new.code)
    assert checked >= 3 * (horizon + 1) - 2


def _mk(task: Task, codes_obs: list[tuple[str, str, str | None]], final: str | None = None) -> Trajectory:
    steps = [Step(kind="plan", thought=task.meta["solution"][0]["thought"])]
    for code, obs, err in codes_obs:
        steps.append(Step(code=code, observation=obs, error=err))
    if final is not None:
        steps[-1].final_answer = final
    return Trajectory(task=task, steps=steps, final_answer=final)


def test_unfinished_trajectory_first_stall_is_the_error():
    task = make_tasks("math", 1, 3, seed=1)[0]
    acts = _actions(task)
    tr = _mk(task, [(acts[0]["code"], acts[0]["value"], None),
                    ("x = a / 0", "ZeroDivisionError: division by zero", "ZeroDivisionError"),
                    ("", "", None)])
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 2 and "failed" in v.analysis


def test_unfinished_wrong_value_beats_earlier_stall():
    task = make_tasks("math", 1, 4, seed=2)[0]
    acts = _actions(task)
    wrong = str(int(acts[1]["value"].split("/")[0]) + 7) if "/" not in acts[1]["value"] else "1234567/3"
    tr = _mk(task, [(acts[0]["code"], acts[0]["value"], None), ("print(", "SyntaxError", "SyntaxError"),
                    ("b = 5\nprint(b)", wrong, None)])
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 3


def test_all_progress_but_unfinished_is_hard_to_teach():
    task = make_tasks("math", 1, 4, seed=3)[0]
    acts = _actions(task)
    tr = _mk(task, [(a["code"], a["value"], None) for a in acts[:2]])
    (v,) = OracleTeacher().locate([tr])
    assert v.hard_to_teach


def test_several_values_in_one_step_count_as_progress():
    task = make_tasks("math", 1, 3, seed=4)[0]
    acts = _actions(task)
    tr = _mk(task, [("...", acts[1]["value"], None), ("...", "-5", None)], final="-5")
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 2  # skipping to value 2 at once is progress; the wrong final answer is the error


def test_correct_trajectory_and_missing_solution():
    task = make_tasks("search", 1, 2, seed=5)[0]
    tr = _mk(task, [("final_answer_print('x')", task.answer, None)], final=task.answer)
    oracle = OracleTeacher()
    bare = Trajectory(task=Task(id="q", question="?", answer="1"), final_answer="2")
    v1, v2 = oracle.locate([tr, bare])
    assert v1.is_correct and v2.failure and "solution" in v2.failure
    assert oracle.usage.calls == 2 and oracle.usage.total_tokens == 0


def test_search_read_wrong_entity_from_results():
    task = make_tasks("search", 1, 3, seed=6)[0]
    chain = task.meta["chain"]
    kb = get_kb(task.meta["kb_seed"])
    res1 = kb.search(chain[0])
    off = next(n for n in kb.mentions(res1) if n not in chain)  # a distractor shown in the results
    steps = [(f"r = web_search({chain[0]!r})\nprint(r)", res1, None),
             (f"r = web_search({off!r})\nprint(r)", kb.search(off), None)]
    tr = _mk(task, steps)
    tr.steps[1].tool_calls = [ToolCall(name="web_search", args=[chain[0]], result=res1)]
    tr.steps[2].tool_calls = [ToolCall(name="web_search", args=[off], result=kb.search(off))]
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 2 and off in v.analysis


def _misspelt(name: str) -> str:
    return name[:-3] + ("xq" if not name.endswith("xq") else "zv") + name[-1]


def test_search_for_a_misspelt_name_is_the_error():
    """A query naming no entity finds nothing on the way: it is the critical error, not a stall that
    stays in the verified prefix (SCoRe-SFT would train the misspelling)."""
    task = make_tasks("search", 1, 2, seed=6)[0]
    chain = task.meta["chain"]
    kb = get_kb(task.meta["kb_seed"])
    bad = _misspelt(chain[0])
    assert not kb.mentions(bad)
    tr = _mk(task, [(f"r = web_search({bad!r})\nprint(r)", kb.search(bad), None),
                    ("final_answer_print('nobody')", "nobody", None)], final="nobody")
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 1 and repr(bad) in v.analysis


def test_search_plan_with_a_misspelt_entity_is_the_error():
    task = make_tasks("search", 1, 2, seed=6)[0]
    chain = task.meta["chain"]
    kb = get_kb(task.meta["kb_seed"])
    tr = _mk(task, [(f"r = web_search({chain[0]!r})\nprint(r)", kb.search(chain[0]), None),
                    ("final_answer_print('nobody')", "nobody", None)], final="nobody")
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 2  # the plan as written names the entity: accepted
    tr.steps[0].thought = tr.steps[0].thought.replace(chain[0], _misspelt(chain[0]))
    (v,) = OracleTeacher().locate([tr])
    assert v.first_error_step == 0 and "does not name" in v.analysis


@pytest.mark.parametrize("printed_page", [True, False])
def test_search_correction_quotes_only_a_sentence_the_prefix_printed(printed_page):
    task = make_tasks("search", 1, 3, seed=6)[0]
    chain = task.meta["chain"]
    kb = get_kb(task.meta["kb_seed"])
    res1 = kb.search(chain[0])
    quote = QUOTE.match(_actions(task)[1]["thought"]).group(1)
    assert quote in res1
    shown = res1 if printed_page else f"found {chain[1]}"  # the entity alone: the sentence was never printed
    off = next(n for n in kb.mentions(res1) if n not in chain)
    tr = _mk(task, [(f"r = web_search({chain[0]!r})\nprint(r)", shown, None),
                    (f"r2 = web_search({off!r})\nprint(r2)", kb.search(off), None)])
    tr.steps[1].tool_calls = [ToolCall(name="web_search", args=[chain[0]], result=res1)]
    tr.steps[2].tool_calls = [ToolCall(name="web_search", args=[off], result=kb.search(off))]
    oracle = OracleTeacher()
    (v,) = oracle.locate([tr])
    assert v.first_error_step == 2
    (prop,) = oracle.correct([tr], [v])
    assert f"web_search({chain[1]!r})" in prop.step.code
    assert (quote in prop.step.thought) is printed_page
    assert chain[1] in prop.step.thought


def test_math_correction_uses_the_prefix_variable_name():
    task = make_tasks("math", 1, 3, seed=8)[0]
    acts = _actions(task)
    tr = _mk(task, [(acts[0]["code"].replace(f"{acts[0]['var']} =", "first_value =").replace(
        f"print({acts[0]['var']})", "print('A is', first_value)"), f"A is {acts[0]['value']}", None),
        ("y = 3\nprint(y * 1000003)", "3000009", None)])
    oracle = OracleTeacher()
    (v,) = oracle.locate([tr])
    assert v.first_error_step == 2
    (prop,) = oracle.correct([tr], [v])
    assert "first_value" in prop.step.code and acts[1]["var"] + " =" in prop.step.code
    assert task.answer not in prop.step.code


@needs_sandbox
@pytest.mark.parametrize("suite", ["math", "search"])
def test_solve_reaches_the_answer(suite, pool):
    oracle = OracleTeacher(pool)
    for h in (2, 4, 8):
        tasks = make_tasks(suite, 20, h, seed=11)
        trajs = oracle.solve(tasks)
        bad = [(t.task.id, t.final_answer, t.task.answer, t.steps[-1].observation[:200])
               for t in trajs if not t.correct]
        assert not bad, bad
        for t in trajs:
            assert t.steps[0].kind == "plan" and all(s.origin == "teacher" for s in t.steps)
            assert t.score == 1.0
            if suite == "search":
                assert any(s.tool_calls for s in t.steps)
        assert all(v.is_correct for v in oracle.locate(trajs))


@needs_sandbox
def test_solution_steps_print_exactly_their_values():
    for task in make_tasks("math", 10, 5, seed=12):
        with Sandbox(SandboxConfig()) as sb:
            for a in _actions(task):
                r = sb.run(a["code"])
                assert r.error is None and r.observation.strip() == a["value"], (task.id, a["code"], r.observation)


def test_verified_progress_counts_key_steps_before_the_first_error():
    from score_distill.stages.evaluate import metrics
    from score_distill.teachers.oracle import verified_progress

    task = make_tasks("math", 1, 4, seed=3)[0]
    acts = _actions(task)
    solved = _mk(task, [(a["code"], a["value"], None) for a in acts], final=task.answer)
    two_then_wrong = _mk(task, [(a["code"], a["value"], None) for a in acts[:2]]
                         + [("c = 5\nprint(c)", "999331", None)])
    two_then_stuck = _mk(task, [(a["code"], a["value"], None) for a in acts[:2]])  # ran out of steps
    wrong_first = _mk(task, [("a = 1\nprint(a)", "999331", None), *[(a["code"], a["value"], None) for a in acts]])
    assert verified_progress(solved) == 1.0
    assert verified_progress(two_then_wrong) == 0.5
    assert verified_progress(two_then_stuck) == 0.5
    assert verified_progress(wrong_first) == 0.0  # later right values do not count after the first error
    assert verified_progress(Trajectory(task=Task(id="q", question="?", answer="1"))) is None
    m = metrics([[solved, two_then_wrong], [two_then_stuck, wrong_first]])
    assert m["progress"] == 0.5
    assert "progress" not in metrics([[Trajectory(task=Task(id="q", question="?", answer="1"))]])
