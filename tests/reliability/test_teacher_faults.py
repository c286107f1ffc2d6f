"""Teacher and judge faults, end to end: the REAL MPS stage (run_mps) with LLMTeacher over OpenAIPolicy
against FakeOpenAIServer (a real HTTP server on 127.0.0.1), and the answer judge over the same client.

Each task gets its own fault (timeouts, resets, 429 + Retry-After, 500, malformed/truncated bodies,
wrong schema, empty answers, out-of-range step indices). We count the requests that reached the
server to prove retries are bounded, and check that every task ends as exactly one record, failed
ones with their reason, and that ``mps_statistics`` counts failures by cause.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict

import pytest

from score_distill.agent import format as fmt
from score_distill.agent.loop import AgentConfig
from score_distill.models.openai_compat import OpenAIPolicy
from score_distill.sandbox import SandboxConfig, SandboxPool
from score_distill.stages.mps import CORRECTED, FAILED, MPSConfig, mps_statistics, run_mps, teacher_unreachable
from score_distill.tasks.judge import AnswerJudge
from score_distill.tasks.registry import make_tasks
from score_distill.teachers import prompts
from score_distill.teachers.llm import LLMTeacher
from score_distill.testing import FakeOpenAIServer, Fault
from score_distill.testing.scripted_policy import ScriptedPolicy, assistant_turns, question_of
from score_distill.trajectory import Task, Trajectory
from score_distill.utils.jsonl import read_jsonl, write_jsonl

TRANSPORT_RETRIES = 1  # OpenAIPolicy: attempts per request = 2
TEACHER_RETRIES = 1  # LLMTeacher: rounds per request = 2
CLIENT_TIMEOUT_S = 2.0  # well above a loaded CI machine's response time, well below Fault.timeout(5)
PERSISTENT_TRANSPORT = (TRANSPORT_RETRIES + 1) * (TEACHER_RETRIES + 1)  # requests for a fault that never heals
PERSISTENT_INVALID = TEACHER_RETRIES + 1

# task index -> (phase, fault, expected status, expected failure cause, expected requests in (locate, write))
# ``fault`` is a Fault, a reply text (the model's answer, 200 OK), or a callable(n-th request) for transient ones.
CASES: list[tuple[str, object, str, str | None, tuple[int, int]]] = [
    ("none", None, CORRECTED, None, (1, 1)),
    ("locate", lambda n: Fault.status(429, retry_after=1) if n == 0 else None, CORRECTED, None, (2, 1)),
    ("locate", Fault.timeout(5), FAILED, "locate: timeout", (PERSISTENT_TRANSPORT, 0)),
    ("locate", Fault.reset(), FAILED, "locate: connection", (PERSISTENT_TRANSPORT, 0)),
    ("locate", Fault.status(500), FAILED, "locate: server_error", (PERSISTENT_TRANSPORT, 0)),
    ("locate", Fault.malformed(), FAILED, "locate: bad_response", (PERSISTENT_TRANSPORT, 0)),
    ("locate", Fault.truncated(), FAILED, "locate: bad_response", (PERSISTENT_TRANSPORT, 0)),
    ("locate", Fault.no_choices(), FAILED, "locate: bad_response", (PERSISTENT_TRANSPORT, 0)),
    # Refused requests are final at once: not retried by the client nor by the teacher. (The endpoint has
    # accepted json_schema already, so a bare 400 is this request's refusal, not the format's.)
    ("locate", Fault.status(400), FAILED, "locate: http_400", (1, 0)),
    ("locate", Fault.status(500, body='{"error": {"message": "1 validation error: Input should be a valid list"}}'),
     FAILED, "locate: http_500", (1, 0)),
    ("locate", '{"verdict": "step 2 is wrong"}', FAILED, "locate: wrong schema", (PERSISTENT_INVALID, 0)),
    ("locate", '{"is_correct": false, "error_analys', FAILED, "locate: invalid JSON", (PERSISTENT_INVALID, 0)),
    ("locate", "", FAILED, "locate: empty reply", (PERSISTENT_INVALID, 0)),
    ("locate", "VERDICT:99", FAILED, "locate: step index out of range", (PERSISTENT_INVALID, 0)),
    ("locate", "VERDICT:-4", FAILED, "locate: step index out of range", (PERSISTENT_INVALID, 0)),
    ("write", Fault.status(503), FAILED, "correct: server_error", (1, PERSISTENT_TRANSPORT)),
    ("write", "", FAILED, "correct: bad format", (1, PERSISTENT_INVALID)),
    ("write", lambda n: "I think the step should compute a." if n == 0 else None, CORRECTED, None, (1, 2)),
]


def _verdict(k_one_based: int) -> str:
    return json.dumps({"is_correct": False, "error_analysis": "The value of A is not computed from the definition.",
                       "first_error_step": k_one_based, "suggestion": "Compute A with exact arithmetic."})


class TeacherServer:
    """The fake endpoint's responder: a competent teacher, except where a case injects a fault."""

    def __init__(self, tasks: list[Task], faults: bool = True):
        self.tasks = tasks
        self.faults = faults
        self.by_q = {t.question: (i, t) for i, t in enumerate(tasks)}
        self.lock = threading.Lock()
        self.calls: dict[tuple[int, str], int] = defaultdict(int)

    def classify(self, req: dict) -> tuple[int, str]:
        system = req["messages"][0]["content"]
        user = next(m["content"] for m in req["messages"] if m["role"] == "user")
        phase = "locate" if system == prompts.LOCATE_SYSTEM else "write"
        q = user.split("Task:\n", 1)[1].split("\n\n", 1)[0]
        return self.by_q[q][0], phase

    def __call__(self, req: dict):
        i, phase = self.classify(req)
        with self.lock:
            n = self.calls[(i, phase)]
            self.calls[(i, phase)] += 1
        case_phase, fault, *_ = CASES[i] if self.faults else (None, None)
        if case_phase == phase and fault is not None:
            f = fault(n) if callable(fault) else fault
            if isinstance(f, str) and f.startswith("VERDICT:"):
                return _verdict(int(f.split(":")[1]))
            if f is not None:
                return f
        task = self.tasks[i]
        if phase == "locate":
            return _verdict(2)  # the student's first action (step 2, 1-based) is wrong
        first_user = next(m["content"] for m in req["messages"] if m["role"] == "user")
        k = int(re.search(r"which you replace:\n\nStep (\d+)", first_user).group(1)) - 1
        s = task.meta["solution"][k]
        return fmt.render_action(s["thought"], s["code"])


def wrong_at_first_action(tasks: list[Task]) -> ScriptedPolicy:
    by_q = {t.question: t for t in tasks}

    wrong = fmt.render_action("I compute A.", "a = 987654321\nprint(a)")

    def script(chat):
        sol = by_q[question_of(chat)].meta["solution"]
        n = assistant_turns(chat)
        if n == 1:
            return wrong
        if any(m["role"] == "assistant" and m["content"] == wrong for m in chat):
            return fmt.render_action("I submit.", "final_answer_print('not the answer')")  # never right by luck
        s = sol[min(n, len(sol) - 1)]
        return fmt.render_plan(s["thought"]) if s["kind"] == "plan" else fmt.render_action(s["thought"], s["code"])

    return ScriptedPolicy(script)


@pytest.fixture(scope="module")
def pool():
    p = SandboxPool(SandboxConfig(timeout_s=10), max_workers=4)
    yield p
    p.close()


def _client(srv: FakeOpenAIServer) -> OpenAIPolicy:
    return OpenAIPolicy(srv.base_url, "fake-model", max_retries=TRANSPORT_RETRIES, backoff_s=0.01,
                        timeout_s=CLIENT_TIMEOUT_S, max_concurrency=32)


def test_mps_stage_survives_every_teacher_fault(pool, tmp_path):
    tasks = make_tasks("math", len(CASES), 2, seed=21, split="train")
    responder = TeacherServer(tasks)
    out = tmp_path / "mps" / "trajectories.jsonl"
    with FakeOpenAIServer(responder) as srv:
        teacher = LLMTeacher(_client(srv), sandbox_pool=pool, max_retries=TEACHER_RETRIES)
        recs = run_mps(wrong_at_first_action(tasks), teacher, tasks, pool, AgentConfig(max_steps=5),
                       MPSConfig(max_corrections=2, chunk_size=6), out)
        per_task = Counter(responder.classify(r.json) for r in srv.chat_requests)
        rate_limited = [r.received_at for r in srv.chat_requests if responder.classify(r.json) == (1, "locate")]

    # Nothing dropped: every input task has exactly one record, in the returned list and on disk.
    on_disk = read_jsonl(out, Trajectory)
    assert [r.task.id for r in recs] == [t.id for t in tasks]
    assert sorted(r.task.id for r in on_disk) == sorted(t.id for t in tasks)
    for i, (phase, _fault, status, cause, (n_locate, n_write)) in enumerate(CASES):
        r = on_disk[[x.task.id for x in on_disk].index(tasks[i].id)]
        where = f"case {i} ({phase}): {r.meta}"
        assert r.meta["mps_status"] == status, where
        # Retries are bounded: exactly the requests the two retry layers allow, no more.
        assert (per_task[(i, "locate")], per_task[(i, "write")]) == (n_locate, n_write), where
        if status == FAILED:
            assert r.meta["failure"].startswith(cause.split(": ")[0] + ": ") and not r.correct, where
            assert r.teacher_usage.failures >= 1, where
        else:
            assert "failure" not in r.meta and r.correct and len(r.corrections) == 1, where
            assert r.corrections[0].step_index == 1 and r.steps[1].origin == "teacher", where
    # Retry-After: 1 was honoured between the 429 and the retry.
    assert rate_limited[1] - rate_limited[0] >= 0.9

    stats = mps_statistics(on_disk)
    expected = Counter(cause for _, _, status, cause, _ in CASES if status == FAILED)
    assert stats["failures_by_cause"] == dict(expected)
    assert stats["failed"] == sum(expected.values()) and stats["status"][CORRECTED] == 3
    assert stats["n_tasks"] == len(tasks)


def test_teacher_outage_records_every_task_and_the_stage_finishes(pool, tmp_path):
    """Nothing listens on the port: every task is recorded as failed with the reason, none lost."""
    tasks = make_tasks("math", 5, 2, seed=22, split="train")
    with FakeOpenAIServer() as srv:
        dead_url = srv.base_url
    policy = OpenAIPolicy(dead_url, "fake-model", max_retries=1, backoff_s=0.01, timeout_s=1)
    t0 = time.monotonic()
    recs = run_mps(wrong_at_first_action(tasks), LLMTeacher(policy, max_retries=1), tasks, pool,
                   AgentConfig(max_steps=5), MPSConfig(max_corrections=2, chunk_size=2), tmp_path / "m.jsonl")
    assert time.monotonic() - t0 < 30
    assert [r.task.id for r in recs] == [t.id for t in tasks]
    assert all(r.meta["mps_status"] == FAILED and r.meta["failure"].startswith("locate: request failed: connection")
               for r in recs)
    assert mps_statistics(recs)["failures_by_cause"] == {"locate: connection": 5}
    assert policy.usage.failures["connection"] == 5 * 2  # per task: 2 teacher rounds, each gave up


def test_a_rerun_redoes_only_the_tasks_the_outage_failed(pool, tmp_path):
    """Teacher down for the first chunk's run, back for the rerun: the same call redoes only the failed
    tasks, the file keeps one record per task, and a task failed for another reason is not redone."""
    tasks = make_tasks("math", 4, 2, seed=23, split="train")
    out = tmp_path / "mps.jsonl"
    cfg = MPSConfig(max_corrections=2, chunk_size=2)
    with FakeOpenAIServer() as srv:
        dead_url = srv.base_url
    down = LLMTeacher(OpenAIPolicy(dead_url, "fake-model", max_retries=0, backoff_s=0.01, timeout_s=1), max_retries=0)
    first = run_mps(wrong_at_first_action(tasks[:2]), down, tasks[:2], pool, AgentConfig(max_steps=5), cfg, out)
    assert all(teacher_unreachable(r) for r in first)
    # A failure that is not the endpoint's (the teacher answered, badly) is final: mark one as such.
    on_disk = read_jsonl(out, Trajectory)
    on_disk[1].meta["failure"] = "locate: wrong schema: missing is_correct"
    write_jsonl(out, on_disk)

    with FakeOpenAIServer(TeacherServer(tasks, faults=False)) as srv:
        up = LLMTeacher(_client(srv), sandbox_pool=pool, max_retries=TEACHER_RETRIES)
        recs = run_mps(wrong_at_first_action(tasks), up, tasks, pool, AgentConfig(max_steps=5), cfg, out)
        n_requests = len(srv.chat_requests)
    again = read_jsonl(out, Trajectory)
    assert [r.task.id for r in again] == [t.id for t in tasks] == [r.task.id for r in recs]
    assert [r.meta["mps_status"] for r in again] == [CORRECTED, FAILED, CORRECTED, CORRECTED]
    assert not any(teacher_unreachable(r) for r in again)
    assert n_requests == 3 * 2  # locate + write for the retried task and the two new ones, nothing else

    # Nothing left to redo: a third run sends no request and leaves the file byte for byte as it was.
    before = out.read_bytes()
    with FakeOpenAIServer(TeacherServer(tasks, faults=False)) as srv:
        up = LLMTeacher(_client(srv), sandbox_pool=pool, max_retries=TEACHER_RETRIES)
        run_mps(wrong_at_first_action(tasks), up, tasks, pool, AgentConfig(max_steps=5), cfg, out)
        assert srv.chat_requests == []
    assert out.read_bytes() == before


def test_retry_failed_false_keeps_the_outage_records(pool, tmp_path):
    tasks = make_tasks("math", 2, 2, seed=24, split="train")
    out = tmp_path / "mps.jsonl"
    with FakeOpenAIServer() as srv:
        dead_url = srv.base_url
    down = LLMTeacher(OpenAIPolicy(dead_url, "fake-model", max_retries=0, backoff_s=0.01, timeout_s=1), max_retries=0)
    cfg = MPSConfig(max_corrections=1, chunk_size=2, retry_failed=False)
    run_mps(wrong_at_first_action(tasks), down, tasks, pool, AgentConfig(max_steps=5), cfg, out)
    with FakeOpenAIServer(TeacherServer(tasks, faults=False)) as srv:
        up = LLMTeacher(_client(srv), sandbox_pool=pool, max_retries=TEACHER_RETRIES)
        recs = run_mps(wrong_at_first_action(tasks), up, tasks, pool, AgentConfig(max_steps=5), cfg, out)
        assert srv.chat_requests == []
    assert all(r.meta["mps_status"] == FAILED for r in recs)


# ----------------------------------------------------------------------------- the answer judge

JUDGE_CASES: list[tuple[object, bool | None, int]] = [
    # (fault or reply text, expected verdict (None: failure), requests)
    ('{"equivalent": true, "reason": "same entity"}', True, 1),
    ('```json\n{"equivalent": false, "reason": "different year"}\n```', False, 1),
    (Fault.timeout(5), None, 4),
    (Fault.reset(), None, 4),
    (Fault.status(500), None, 4),
    (Fault.malformed(), None, 4),
    (Fault.truncated(), None, 4),
    ("", None, 2),
    ('{"equivalent": "true", "reason": "x"}', None, 2),  # a string is not a boolean
    ('{"equivalent": true}', None, 2),  # missing field
    ('{"equivalent": true, "reason": "x", "score": 1}', None, 2),  # extra key
    ("The answers are equivalent: true.", None, 2),  # prose that contains "true"
    ('{"equivalent": tr', None, 2),  # truncated JSON text
]


def test_answer_judge_faults_bounded_and_recorded(tmp_path):
    tasks = [Task(id=f"qa-{i}", question=f"JUDGE-{i}: who founded the company?", answer="Ada Lovelace")
             for i in range(len(JUDGE_CASES))]
    items = [(t, "Augusta King") for t in tasks]  # not a deterministic match: the LLM must judge

    def responder(req):
        i = int(re.search(r"JUDGE-(\d+)", req["messages"][1]["content"]).group(1))
        return JUDGE_CASES[i][0]

    cache = tmp_path / "judge_cache.jsonl"
    with FakeOpenAIServer(responder) as srv:
        judge = AnswerJudge(_client(srv), cache, retries=1)
        results = judge.judge(items)
        per_item = Counter(int(re.search(r"JUDGE-(\d+)", r.json["messages"][1]["content"]).group(1))
                           for r in srv.chat_requests)
    assert len(results) == len(items)
    for i, ((_, expected, n_req), res) in enumerate(zip(JUDGE_CASES, results)):
        assert per_item[i] == n_req, (i, res)
        assert res.equivalent is expected, (i, res)
        if expected is None:
            assert res.source == "failure" and res.failure, (i, res)
    failures = sum(1 for _, e, _ in JUDGE_CASES if e is None)
    assert judge.usage.failures == failures
    # Only valid verdicts are cached; a rerun against a healthy judge asks again for the failed ones only.
    assert len(read_jsonl(cache)) == len(JUDGE_CASES) - failures
    with FakeOpenAIServer(lambda req: '{"equivalent": false, "reason": "different person"}') as srv:
        again = AnswerJudge(_client(srv), cache, retries=1).judge(items)
        assert len(srv.chat_requests) == failures
    assert [r.source for r in again].count("cache") == len(JUDGE_CASES) - failures
    assert all(r.equivalent is not None for r in again)
