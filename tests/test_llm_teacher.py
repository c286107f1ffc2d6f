"""LLMTeacher against a real HTTP server (FakeOpenAIServer on 127.0.0.1) through OpenAIPolicy."""

from __future__ import annotations

import json
import threading
from collections import defaultdict

import pytest

from score_distill.agent.loop import AgentConfig
from score_distill.models.openai_compat import OpenAIPolicy
from score_distill.teachers import prompts
from score_distill.teachers.base import Teacher, Verdict
from score_distill.teachers.llm import LLMTeacher, parse_locate_reply
from score_distill.testing import FakeOpenAIServer, Fault
from score_distill.trajectory import Step, Task, Trajectory


def task(tid: str, question: str, answer: str = "\\boxed{1680}") -> Task:
    return Task(id=tid, question=question, answer=answer)


def traj(t: Task, n_actions: int = 3, final: str | None = "\\boxed{40320}", outcome: str = "wrong") -> Trajectory:
    steps = [Step(kind="plan", thought="Count colourings, divide by symmetries.")]
    for i in range(n_actions):
        steps.append(Step(thought=f"step {i}", code=f"x{i} = {i}\nprint(x{i})", observation=f"{i}\n"))
    if final is not None:
        steps[-1].final_answer = final
    return Trajectory(task=t, steps=steps, final_answer=final, outcome=outcome)


def verdict_json(k: int, **over) -> str:
    d = {"is_correct": False, "error_analysis": "wrong formula", "first_error_step": k, "suggestion": "divide by 24"}
    d.update(over)
    return json.dumps(d)


class Scripted:
    """Responder: per task (found by a marker in the last user message... or the first), a queue of replies."""

    def __init__(self, script: dict[str, list]):
        self.script = {k: list(v) for k, v in script.items()}
        self.seen: dict[str, list[dict]] = defaultdict(list)
        self.lock = threading.Lock()

    def __call__(self, req: dict):
        first_user = next(m["content"] for m in req["messages"] if m["role"] == "user")
        key = next(k for k in self.script if k in first_user)
        with self.lock:
            self.seen[key].append(req)
            return self.script[key].pop(0)


def policy(srv: FakeOpenAIServer, **kw) -> OpenAIPolicy:
    return OpenAIPolicy(srv.base_url, "fake-model", max_retries=1, backoff_s=0.01, timeout_s=10, **kw)


def test_parse_locate_reply_rules():
    assert parse_locate_reply(verdict_json(2), 4)[0].first_error_step == 2
    assert parse_locate_reply("```json\n" + verdict_json(-1) + "\n```", 4)[0].first_error_step == -1
    legacy = {"is_correct": False, "error_analysis": "x", "correction_start_step": 3, "correction_suggestion": "y"}
    assert parse_locate_reply(json.dumps(legacy), 4)[0].first_error_step == 3
    assert parse_locate_reply("The error is in step 2.", 4)[1].startswith("invalid JSON")
    assert parse_locate_reply("[1, 2]", 4)[1] == "expected a JSON object, got list"
    assert "first_error_step" in parse_locate_reply(verdict_json("2"), 4)[1]  # strict: no "2" for 2
    assert "is_correct" in parse_locate_reply(verdict_json(2, is_correct="no"), 4)[1]
    assert parse_locate_reply(verdict_json(5), 4)[1] == "step index 5 out of range (1..4 or -1)"
    assert parse_locate_reply(verdict_json(0), 4)[1] == "step index 0 out of range (1..4 or -1)"
    assert "known to be wrong" in parse_locate_reply(verdict_json(2, is_correct=True), 4)[1]


def test_locate_retries_bounded_failures_recorded_indices_converted():
    ta, tb, tc, td, te = (task(k, f"TASK-{k}: how many cube models?") for k in "ABCDE")
    script = Scripted({
        "TASK-A": [verdict_json(2)],
        "TASK-B": ["Sure! The first error is step 2.", verdict_json("2"), verdict_json(4)],
        "TASK-C": [verdict_json(9), verdict_json(2, is_correct=True), verdict_json(0)],
        "TASK-D": [verdict_json(-1)],
        "TASK-E": [],  # correct trajectory: must not be asked
    })
    trajs = [traj(ta), traj(tb), traj(tc), traj(td, final=None, outcome="unfinished"),
             traj(te, final="\\boxed{1680}", outcome="correct")]
    with FakeOpenAIServer(script) as srv:
        teacher = LLMTeacher(policy(srv), max_retries=2)
        assert isinstance(teacher, Teacher)
        vs = teacher.locate(trajs)
        reqs = srv.chat_requests
    assert len(vs) == 5
    a, b, c, d, e = vs
    assert (a.is_correct, a.first_error_step, a.failure, a.analysis, a.suggestion) == (
        False, 1, None, "wrong formula", "divide by 24")
    assert a.usage.calls == 1 and a.usage.failures == 0 and a.usage.prompt_tokens > 0
    assert b.first_error_step == 3 and b.failure is None and b.usage.calls == 3 and b.usage.failures == 2
    assert c.failure == "step index 0 out of range (1..4 or -1)" and c.first_error_step is None
    assert c.usage.calls == 3 and c.usage.failures == 3 and not c.hard_to_teach
    assert d.hard_to_teach and d.failure is None
    assert e.is_correct and e.usage.calls == 0
    # 4 asked, 2 retried twice: 8 requests, no more (retries are bounded)
    assert len(reqs) == 4 + 2 + 2 and "TASK-E" not in script.seen
    # the schema is sent for constrained decoding; the judge runs greedy
    body = reqs[0].json
    assert body["response_format"]["json_schema"]["schema"] == prompts.LOCATE_SCHEMA and body["temperature"] == 0.0
    # a retry shows the rejected reply and why it was rejected
    retry = script.seen["TASK-B"][1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "Sure! The first error is step 2."}
    assert "invalid JSON" in retry[-1]["content"]
    # the reviewer sees the reference answer and numbered steps; unfinished runs are said to be so
    first = script.seen["TASK-D"][0]["messages"][1]["content"]
    assert "Reference answer: \\boxed{1680}" in first and "Step 4:" in first
    assert "without giving a final answer" in first
    assert teacher.usage.calls == 1 + 3 + 3 + 1


def test_locate_survives_transport_faults():
    t1 = task("1", "TASK-1: q")
    # the request's body is not JSON, the client's own retry gets HTTP 500: a failed Completion; ours retries it
    faults = [Fault.malformed(), Fault.status(500)]
    script = Scripted({"TASK-1": [verdict_json(3)]})
    with FakeOpenAIServer(script, faults=faults) as srv:
        (v,) = LLMTeacher(policy(srv), max_retries=1).locate([traj(t1)])
        assert len(srv.chat_requests) == 3
    assert v.first_error_step == 2 and v.failure is None
    assert v.usage.calls == 2 and v.usage.failures == 1

    with FakeOpenAIServer(lambda req: Fault.status(503)) as srv:
        (v,) = LLMTeacher(policy(srv), max_retries=1).locate([traj(t1)])
    assert v.failure.startswith("request failed: server_error") and v.usage.calls == 2


def test_locate_against_a_server_that_refuses_json_schema_with_http_500():
    """llama-cpp-python's answer to response_format json_schema: the reviewer goes on in json_object mode,
    one refusal in all, no retries; the verdicts are parsed."""
    refusal = json.dumps({"error": {"message": "response_format.type: Input should be 'text' or 'json_object'"}})
    tasks = [task(str(i), f"TASK-{i}: q") for i in range(3)]
    modes = []

    def responder(req):
        mode = (req.get("response_format") or {}).get("type", "text")
        modes.append(mode)
        return Fault.status(500, body=refusal) if mode == "json_schema" else verdict_json(2)

    with FakeOpenAIServer(responder) as srv:
        teacher = LLMTeacher(policy(srv), max_retries=1)
        verdicts = teacher.locate([traj(t) for t in tasks])
    assert [v.failure for v in verdicts] == [None] * 3 and [v.first_error_step for v in verdicts] == [1] * 3
    assert modes == ["json_schema"] + ["json_object"] * 3
    assert teacher.policy.structured_output_mode == "json_object"


def test_a_refused_request_is_not_sent_again_by_the_teacher():
    t1 = task("1", "TASK-1: q")
    body = json.dumps({"error": {"message": "This model's maximum context length is 2048 tokens"}})
    with FakeOpenAIServer(lambda req: Fault.status(400, body=body)) as srv:
        (v,) = LLMTeacher(policy(srv, structured_output="text"), max_retries=2).locate([traj(t1)])
        assert len(srv.chat_requests) == 1
    assert v.failure.startswith("request failed: http_400: the endpoint rejected the request (HTTP 400: This model")
    assert v.usage.calls == 1 and v.usage.failures == 1


# ----------------------------------------------------------------------------- correct

CUBE_Q = "CUBE: how many cube models with 8 distinct colours at the vertices, counted up to rotation?"
LEAKY = '<thought>The count is known.</thought>\n<code>\nfinal_answer_print("\\\\boxed{1680}")\n</code>'
TALKY = ("<thought>To correct the mistake, I divide by the 24 rotations.</thought>\n"
         "<code>\nprint(math.factorial(8) // 24)\n</code>")
CLEAN = ("<thought>Each model is counted once per rotation, so I divide the 8! colourings by the 24 rotations."
         "</thought>\n<code>\nimport math\nprint(math.factorial(8) // 24)\n</code>")
PLAN = "<first_thought>Count the 8! colourings, then divide by the 24 rotations of the cube.</first_thought>"


def test_correct_retries_leaks_and_correction_talk_then_accepts_a_clean_step():
    t1, t2, t3 = task("1", "[good] " + CUBE_Q), task("2", "[leaker] " + CUBE_Q), task("3", "[planner] " + CUBE_Q)
    script = Scripted({"[good]": [LEAKY, TALKY, CLEAN], "[leaker]": [LEAKY, LEAKY, LEAKY], "[planner]": [PLAN]})
    trajs = [traj(t1), traj(t2), traj(t3)]
    analysis = "Step 3 multiplies instead of dividing. The correct answer is 1680."
    vs = [Verdict(False, 2, analysis, "Compute 8!/24 = 1680 instead."), Verdict(False, 2, analysis, "Divide."),
          Verdict(False, 0, analysis, "Plan to divide by the rotations.")]
    with FakeOpenAIServer(script) as srv:
        teacher = LLMTeacher(policy(srv), max_retries=2)
        props = teacher.correct(trajs, vs)
        bodies = [r.body for r in srv.chat_requests]
    good, leaker, plan = props
    assert good.failure is None and good.step.kind == "action" and good.step.origin == "teacher"
    assert "factorial(8) // 24" in good.step.code and good.usage.calls == 3 and good.usage.failures == 2
    assert leaker.step is None and leaker.failure == "leaks the reference answer" and leaker.usage.calls == 3
    assert plan.step.kind == "plan" and plan.step.code == "" and plan.usage.calls == 1
    # the retry instructions said why
    retries = script.seen["[good]"]
    assert retries[1]["messages"][-1]["content"] == prompts.RETRY_LEAK
    assert retries[2]["messages"][-1]["content"] == prompts.RETRY_CORRECTION
    # the step writer never sees the reference answer, not even through the analysis
    first_requests = [json.loads(b) for b in bodies]
    for body in first_requests:
        first_turn = json.dumps(body["messages"][:2])
        assert "1680" not in first_turn, first_turn
    assert "multiplies instead of dividing" in json.dumps(script.seen["[good]"][0]["messages"])


def test_correct_skips_verdicts_without_a_located_error():
    t = task("1", CUBE_Q)
    vs = [Verdict(True), Verdict(False), Verdict(False, failure="invalid JSON"), Verdict(False, 7)]
    with FakeOpenAIServer(lambda req: pytest.fail("no request expected")) as srv:
        props = LLMTeacher(policy(srv)).correct([traj(t)] * 4, vs)
        assert srv.chat_requests == []
    assert [p.step for p in props] == [None] * 4
    assert props[3].failure == "step index 7 out of range (0..3)"
    with pytest.raises(ValueError):
        LLMTeacher(policy(srv)).correct([traj(t)], [])


def test_scrub_drops_sentences_that_carry_the_answer():
    text = "The plan ignores rotations. The reference answer is 1680. Divide 8! by 24 to get 1680."
    assert prompts.scrub_answer(text, "\\boxed{1680}") == "The plan ignores rotations."
    clean = "The search found the wrong city."
    assert prompts.scrub_answer(clean, "\\boxed{Adelaide}") == clean


# ----------------------------------------------------------------------------- solve


def solver(req: dict) -> str:
    msgs = req["messages"]
    assert "Compute every value with code" in msgs[0]["content"]  # the teacher's guidance
    if not any(m["role"] == "assistant" for m in msgs):
        return PLAN
    return ("<thought>Divide by the rotations.</thought>\n"
            "<code>\nimport math\nfinal_answer_print(math.factorial(8) // 24)\n</code>")


def test_solve_runs_the_agent_loop_in_the_sandbox():
    from score_distill.sandbox import SandboxConfig, SandboxPool

    pool = SandboxPool(SandboxConfig(), max_workers=2)
    tasks = [task("1", CUBE_Q), task("2", CUBE_Q, answer="\\boxed{7}")]
    with FakeOpenAIServer(solver) as srv:
        teacher = LLMTeacher(policy(srv), sandbox_pool=pool, agent_config=AgentConfig(max_steps=4),
                             tools_for=lambda t: {}, scorer=lambda t, a: float(a == t.answer.strip("\\boxed{}")))
        trajs = teacher.solve(tasks)
        n_requests = len(srv.chat_requests)
    assert [t.outcome for t in trajs] == ["correct", "wrong"]
    assert all(s.origin == "teacher" for t in trajs for s in t.steps)
    assert trajs[0].steps[1].observation.strip() == "1680" and trajs[0].final_answer == "1680"
    assert n_requests == 4 and teacher.usage.calls == 4
    assert trajs[0].teacher_usage.completion_tokens > 0
    # stored trajectories keep the plain agent prompt (the guidance is the teacher's only)
    assert "Compute every value" not in trajs[0].to_messages()[0]["content"]
