"""The teacher guards on full teacher solves (BC init, the BC baseline, equal-budget BC, bc_continued): an LLM
teacher's solves over a real HTTP server (FakeOpenAIServer on 127.0.0.1), the oracle's, and a pipeline stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from score_distill.agent import format as fmt
from score_distill.agent.loop import AgentConfig
from score_distill.models.openai_compat import OpenAIPolicy
from score_distill.stages.bc import guard_counts, rejection_sample, solve_resumable, teacher_cost
from score_distill.teachers.guards import GuardViolation, check_teacher_solve
from score_distill.teachers.llm import LLMTeacher
from score_distill.testing import FakeOpenAIServer
from score_distill.trajectory import Step, Task, Trajectory
from score_distill.utils.jsonl import read_jsonl

PLAN = fmt.render_plan("Count the 8! colourings, then divide by the 24 rotations of the cube.")
COMPUTE = "import math\nprint(math.factorial(8) // 24)"
# Per task (a marker in the question): the action steps the teacher writes after its plan.
SOLVES = {
    "[clean]": [("Divide the colourings by the rotations.", COMPUTE),
                ("The count is printed above.", "final_answer_print(1680)")],
    # The answer step states the answer it never computed: a solve's conclusion, not checked for a leak.
    "[direct]": [("Report the count.", "final_answer_print(1680)")],
    "[talky]": [("Wait, the previous step was wrong. As the teacher, I divide by the 24 rotations.", COMPUTE),
                ("The count is printed above.", "final_answer_print(1680)")],
    # An early step writes the reference answer before any observation showed it.
    "[leaky]": [("The count is 1680; let me confirm it.", COMPUTE),
                ("The count is printed above.", "final_answer_print(1680)")],
}


def solver(req: dict) -> str:
    msgs = req["messages"]
    user = next(m["content"] for m in msgs if m["role"] == "user")
    key = next(k for k in SOLVES if k in user)
    n = sum(1 for m in msgs if m["role"] == "assistant")
    if n == 0:
        return PLAN
    thought, code = SOLVES[key][n - 1]
    return fmt.render_action(thought, code)


def _tasks() -> list[Task]:
    q = "how many cube models with 8 distinct colours at the vertices, counted up to rotation?"
    return [Task(id=k.strip("[]"), question=f"{k} {q}", answer="\\boxed{1680}") for k in SOLVES]


@pytest.fixture
def pool():
    from score_distill.sandbox import SandboxConfig, SandboxPool

    p = SandboxPool(SandboxConfig(), max_workers=2)
    yield p
    p.close()


def test_llm_teacher_solves_with_correction_talk_or_an_early_leak_are_recorded_and_never_trained(tmp_path, pool):
    out = tmp_path / "teacher_trajectories.jsonl"
    with FakeOpenAIServer(solver) as srv:
        policy = OpenAIPolicy(srv.base_url, "fake-model", max_retries=0, timeout_s=10)
        teacher = LLMTeacher(policy, sandbox_pool=pool, agent_config=AgentConfig(max_steps=4),
                             tools_for=lambda t: {}, name="llm:fake-model")
        trajs = solve_resumable(teacher, _tasks(), out)
        n_requests = len(srv.chat_requests)
        # Resumed: nothing is asked again, and the records read back carry the same verdicts.
        again = solve_resumable(teacher, _tasks(), out)
        assert len(srv.chat_requests) == n_requests
    assert all(t.correct for t in trajs)  # every solve reaches 1680: only the guards tell them apart
    got = {t.task.id: t.meta.get("guard_violation") for t in trajs}
    assert got["clean"] is None and got["direct"] is None
    talky = GuardViolation.model_validate(got["talky"])
    assert talky.guard == "correction_talk" and talky.step_index == 1 and talky.teacher == "llm:fake-model"
    assert "Wait" in talky.detail and talky.step.thought.startswith("Wait")
    leaky = GuardViolation.model_validate(got["leaky"])
    assert leaky.guard == "answer_leak" and leaky.step_index == 1
    # Never trained: rejection sampling keeps only the correct solves that passed.
    assert [t.task.id for t in rejection_sample(trajs)] == ["clean", "direct"]
    assert [t.task.id for t in rejection_sample(again)] == ["clean", "direct"]
    cost = teacher_cost(trajs)
    assert cost["retained"] == 2
    assert cost["guard"] == {"violations": 2, "by_guard": {"correction_talk": 1, "answer_leak": 1},
                             "correct_dropped": 2}
    on_disk = {r.task.id: r.meta.get("guard_violation") for r in read_jsonl(out, Trajectory)}
    assert on_disk == got


def test_records_written_before_the_guard_are_checked_on_reading(tmp_path):
    t = Task(id="old", question="q", answer="7")
    steps = [Step(kind="plan", thought="Add them."),
             Step(thought="Let me fix the mistake and add again.", code="print(3 + 4)", observation="7\n"),
             Step(thought="Answer.", code="final_answer_print(7)", final_answer="7")]
    rec = Trajectory(task=t, steps=steps, final_answer="7", outcome="correct", score=1.0)
    out = tmp_path / "teacher_trajectories.jsonl"
    out.write_text(rec.model_dump_json() + "\n")

    class NoTeacher:
        name = "none"

        def solve(self, tasks):
            raise AssertionError("nothing to solve: the record is on disk")

    (old,) = solve_resumable(NoTeacher(), [t], out)
    assert old.meta["guard_violation"]["guard"] == "correction_talk"
    assert rejection_sample([old]) == [] and guard_counts([old])["correct_dropped"] == 1


def test_the_oracles_solves_pass_the_guards(pool):
    from score_distill.tasks.registry import make_tasks
    from score_distill.teachers.factory import make_teacher

    class Cfg:
        class teacher:
            kind = "oracle"

    teacher = make_teacher(Cfg, pool)
    for suite in ("math", "search"):
        for h in (1, 3, 5):
            trajs = teacher.solve(make_tasks(suite, 6, h, seed=21))
            assert all(t.correct for t in trajs)
            assert [check_teacher_solve(t) for t in trajs] == [None] * len(trajs)
            # The same solve with a reviewer's remark in one step fails, with the step named.
            bad = trajs[0].model_copy(deep=True)
            bad.steps[1].thought = "Upon reflection, " + bad.steps[1].thought
            v = check_teacher_solve(bad, "oracle")
            assert v is not None and v.guard == "correction_talk" and v.step_index == 1


REPO = Path(__file__).resolve().parents[1]


def test_bc_init_stage_counts_and_drops_guarded_solves(tmp_path, monkeypatch):
    """The pipeline's BC init on a user's task files with an LLM teacher: two of the eight solves talk like a
    reviewer; they stay in the stage's records, are counted in its state and the run summary, and are not trained."""
    from score_distill.cli import main

    answers = {r["question"]: r["answer"] for r in read_jsonl(REPO / "examples" / "my_tasks.jsonl")}
    talky = sorted(answers)[:2]

    def teacher(req: dict) -> str:
        msgs = req["messages"]
        user = next(m["content"] for m in msgs if m["role"] == "user")
        if not any(m["role"] == "assistant" for m in msgs):
            return fmt.render_plan("Work out the value with Python, then answer.")
        q = next(q for q in answers if q in user)
        a = answers[q][0] if isinstance(answers[q], list) else answers[q]
        thought = "My previous approach was wrong, so I answer directly." if q in talky else "Report the value."
        return fmt.render_action(thought, f"final_answer_print({a!r})")

    monkeypatch.chdir(REPO)  # the example config names its files relative to the repository
    out = tmp_path / "run"
    with FakeOpenAIServer(teacher) as srv:
        code = main(["run", "--preset", "tiny", "--config", "examples/my_tasks.yaml", "--out", str(out), "--to",
                     "bc_init", f"teacher.base_url={srv.base_url}", "teacher.model=fake-model",
                     "teacher.max_retries=0", "teacher.timeout_s=10", "bc.share=1.0"])
    assert code == 0
    state = json.loads((out / "bc_init" / "stage.json").read_text())
    records = read_jsonl(out / "bc_init" / "teacher_trajectories.jsonl", Trajectory)
    flagged = sorted(r.task.question for r in records if r.meta.get("guard_violation"))
    assert flagged == talky
    n_correct = sum(r.correct for r in records)
    assert state["teacher"]["guard"] == {"violations": 2, "by_guard": {"correction_talk": 2}, "correct_dropped": 2}
    assert state["teacher"]["retained"] == n_correct - 2 == state["n_records"]
