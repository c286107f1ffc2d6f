"""Key-step reward cases and the equivalence checks behind them."""

from __future__ import annotations

import json

from score_distill.models.base import Completion
from score_distill.rl.config import EquivalenceConfig, RewardWeights
from score_distill.rl.equivalence import (
    EquivalenceChecker,
    StepJudge,
    deterministic_equivalence,
    normalize_code,
    parse_judge_reply,
)
from score_distill.rl.items import RLItem
from score_distill.rl.reward import compute_rewards, reason_counts
from score_distill.trajectory import Step, Task, Trajectory

TASK = Task(id="t1", question="What is 6*7+1?", answer="43")
PLAN = Step(kind="plan", thought="Multiply then add one.")
TEACHER = Step(thought="multiply", code="p = 6 * 7\nprint(p)", observation="42", origin="teacher")
WRONG = Step(thought="add", code="s = 6 + 7\nprint(s)", observation="13")
ITEM = RLItem(id="i1", kind="key_step", task=TASK, prefix=[PLAN], chosen=TEACHER, rejected=WRONG, step_index=1)


def act(code: str, obs: str, final: str | None = None, error: str | None = None) -> Step:
    return Step(thought="t", code=code, observation=obs, final_answer=final, error=error)


def traj(steps: list[Step], outcome: str) -> Trajectory:
    final = next((s.final_answer for s in steps if s.final_answer is not None), None)
    return Trajectory(task=TASK, steps=steps, final_answer=final, outcome=outcome)


FINISH_WRONG = act("final_answer_print(44)", "44", final="44")


def rewards(trajs, item=ITEM, weights=None, sparse=False, checker=None):
    return compute_rewards([item] * len(trajs), trajs, weights or RewardWeights(), checker or EquivalenceChecker(),
                           sparse=sparse)


def test_each_reward_case():
    cases = [
        traj([PLAN, act("x = 6*7\nprint(x)", "42"), act("final_answer_print(x+1)", "43", "43")], "correct"),
        traj([PLAN, act("product = 6 * 7  # same\nprint(product)", "42"), FINISH_WRONG], "wrong"),
        traj([PLAN, act("total = 6 + 7\nprint(total)", "13"), FINISH_WRONG], "wrong"),
        traj([PLAN, act("print(6 - 7)", "-1"), FINISH_WRONG], "wrong"),
        traj([PLAN, act("p = 6 * 7\nprint(p)", "42")], "unfinished"),
    ]
    got = rewards(cases)
    assert [(r.reward, r.reason) for r in got] == [
        (1.0, "correct"), (0.5, "teacher_equivalent"), (0.0, "repeats_mistake"), (0.1, "other"),
        (0.0, "no_final_answer")]
    assert got[1].method == "same_code" and got[2].method == "same_code"
    assert reason_counts(got) == {"correct": 1, "teacher_equivalent": 1, "repeats_mistake": 1, "other": 1,
                                  "no_final_answer": 1, "wrong": 0, "answers_wrong": 0}


def test_a_key_step_that_itself_answers_wrong_earns_zero_as_the_reference_scores_it():
    answers_at_once = traj([PLAN, act("final_answer_print(45)", "45", final="45")], "wrong")
    avoids_and_continues = traj([PLAN, act("print(6 - 7)", "-1"), FINISH_WRONG], "wrong")
    got = rewards([answers_at_once, avoids_and_continues])
    assert [(r.reward, r.reason) for r in got] == [(0.0, "answers_wrong"), (0.1, "other")]
    # The rollout that repeats the mistake's own answer is still "repeats_mistake".
    item = ITEM.model_copy(update={"rejected": act("final_answer_print(13)", "13", final="13")})
    repeat = traj([PLAN, act("final_answer_print(6 + 7)", "13", final="13")], "wrong")
    assert rewards([repeat], item=item)[0].reason == "repeats_mistake"
    # The old rule only behind its flag.
    old = rewards([answers_at_once], weights=RewardWeights(wrong_answer_key_step_earns_other=True))[0]
    assert (old.reward, old.reason) == (0.1, "other")


def test_two_silent_steps_are_not_the_same_result():
    silent_teacher = Step(thought="store it", code="p = 6 * 7", observation="(no output)", origin="teacher")
    item = ITEM.model_copy(update={"chosen": silent_teacher})
    silent_other = traj([PLAN, act("q = 6 - 7", "(no output)"), FINISH_WRONG], "wrong")
    r = rewards([silent_other], item=item)[0]
    assert (r.reward, r.reason) == (0.1, "other")
    # The same silent code is still the same step (same_code), whatever it printed.
    same = traj([PLAN, act("prod = 6 * 7", "(no output)"), FINISH_WRONG], "wrong")
    assert rewards([same], item=item)[0].reason == "teacher_equivalent"
    legacy = EquivalenceChecker(EquivalenceConfig(silent_outputs_match=True))
    r = rewards([silent_other], item=item, checker=legacy)[0]
    assert (r.reward, r.reason, r.method) == (0.5, "teacher_equivalent", "same_result")
    cfg = EquivalenceConfig()
    for silent in ("(no output)", "Execution successful, no output.", "", "None"):
        assert not deterministic_equivalence(act("a = 1", silent), act("b = 2", silent), cfg).equivalent


def test_key_step_credit_without_final_answer_is_configurable():
    t = traj([PLAN, act("p = 6 * 7\nprint(p)", "42")], "unfinished")
    assert rewards([t])[0].reason == "no_final_answer"
    w = RewardWeights(key_step_credit_without_final_answer=True, teacher_equivalent=0.7)
    assert (rewards([t], weights=w)[0].reward, rewards([t], weights=w)[0].reason) == (0.7, "teacher_equivalent")


def test_sparse_reward_and_question_only_items_use_the_outcome_only():
    t = traj([PLAN, act("p = 6 * 7\nprint(p)", "42"), FINISH_WRONG], "wrong")
    assert (rewards([t], sparse=True)[0].reward, rewards([t], sparse=True)[0].reason) == (0.0, "wrong")
    q = RLItem(id="q", kind="question_only", task=TASK)
    assert rewards([t], item=q)[0].reason == "wrong"
    assert rewards([traj([PLAN, act("final_answer_print(43)", "43", "43")], "correct")], item=q)[0].reward == 1.0


def test_generation_failure_counts_as_no_final_answer():
    t = traj([PLAN], "error")
    assert rewards([t])[0].reason == "no_final_answer"


def test_same_result_counts_even_with_different_code():
    t = traj([PLAN, act("print(sum([6]*7))", "42"), FINISH_WRONG], "wrong")
    r = rewards([t])[0]
    assert (r.reason, r.method) == ("teacher_equivalent", "same_result")


def test_normalize_code_ignores_names_comments_docstrings_but_not_semantics():
    a = "def f(a):\n    '''doc'''\n    return a * 2  # twice\nres = f(3)\nprint(res)"
    b = "def double(x):\n    return x*2\n\nout = double(3)\nprint(out)"
    c = "def double(x):\n    return x*3\nout = double(3)\nprint(out)"
    assert normalize_code(a) == normalize_code(b)
    assert normalize_code(a) != normalize_code(c)
    # A free name (defined by an earlier step) is not renamed: using another variable is another program.
    assert normalize_code("print(total)") != normalize_code("print(count)")
    assert normalize_code("import sympy as sp\nprint(sp.pi)") == normalize_code("import sympy as sy\nprint(sy.pi)")
    assert normalize_code("x = (") .startswith("<unparsed>")


def test_errors_and_empty_output_are_not_evidence_of_equivalence():
    cfg = EquivalenceConfig()
    e1 = act("print(1/0)", "ZeroDivisionError: division by zero", error="ZeroDivisionError")
    e2 = act("print(2/0)", "ZeroDivisionError: division by zero", error="ZeroDivisionError")
    assert not deterministic_equivalence(e1, e2, cfg).equivalent
    assert not deterministic_equivalence(act("a = 1", ""), act("b = 2", ""), cfg).equivalent
    assert not deterministic_equivalence(PLAN, TEACHER, cfg).equivalent  # plan vs action


def test_plan_similarity_threshold():
    cfg = EquivalenceConfig(plan_similarity=0.8)
    p1 = Step(kind="plan", thought="Compute the product of six and seven, then add one to it.")
    p2 = Step(kind="plan", thought="compute the product of six and seven,\nthen add one to it")
    p3 = Step(kind="plan", thought="Search the web for the population of France.")
    assert deterministic_equivalence(p1, p2, cfg).equivalent
    assert not deterministic_equivalence(p1, p3, cfg).equivalent


class _ScriptedJudge:
    """A Policy that answers with fixed texts, counting calls (the judge protocol is a plain Policy)."""

    name = "scripted-judge"

    def __init__(self, replies):
        self.replies = list(replies)
        self.seen = []

    def generate(self, chats, params):
        assert params.json_schema is not None and params.temperature == 0.0
        self.seen.extend(chats)
        return [Completion(text=self.replies.pop(0)) for _ in chats]


def test_parse_judge_reply_is_strict():
    assert parse_judge_reply('{"equivalent": true, "reason": "same"}').equivalent is True
    assert parse_judge_reply('The answer is true') is None
    assert parse_judge_reply('{"equivalent": "true"}') is None
    assert parse_judge_reply('{"equivalent": true, "extra": 1}') is None
    assert parse_judge_reply('```json\n{"equivalent": true}\n```') is None


def test_judge_decides_only_what_the_checks_reject_and_is_cached(tmp_path):
    cache = tmp_path / "judge.jsonl"
    pol = _ScriptedJudge(["not json, true", '{"equivalent": true, "reason": "same approach"}'])
    checker = EquivalenceChecker(EquivalenceConfig(use_judge=True), StepJudge(pol, cache, retries=1))
    cand = act("print(6*7)", "")  # no output evidence, different code
    v = checker.check(TASK.question, cand, TEACHER)
    assert v.equivalent and v.method == "judge"
    assert len(pol.seen) == 2  # one invalid reply, one retry
    # Same-code pair never reaches the judge.
    assert checker.check(TASK.question, act("p = 6 * 7\nprint(p)", "42"), TEACHER).method == "same_code"
    assert len(pol.seen) == 2
    rec = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rec) == 1 and rec[0]["equivalent"] is True
    # A new run reads the cache: no calls at all.
    pol2 = _ScriptedJudge([])
    checker2 = EquivalenceChecker(EquivalenceConfig(use_judge=True), StepJudge(pol2, cache))
    assert checker2.check(TASK.question, cand, TEACHER).equivalent
    assert pol2.seen == []


def test_judge_invalid_after_retries_is_not_equivalent_and_not_cached(tmp_path):
    pol = _ScriptedJudge(["yes", "true!"])
    judge = StepJudge(pol, tmp_path / "c.jsonl", retries=1)
    assert judge.judge([(TASK.question, act("print(1)", ""), TEACHER)]) == [False]
    assert judge.failures == 1 and not (tmp_path / "c.jsonl").exists()
