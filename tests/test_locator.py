"""RolloutLocator: binary search over prefixes with a scripted teacher, the real agent loop and sandbox."""

from __future__ import annotations

import math

import pytest

from score_distill.agent.loop import AgentConfig
from score_distill.models.base import Completion
from score_distill.teachers.base import StepProposal, Verdict
from score_distill.teachers.locator import RolloutLocator
from score_distill.trajectory import Step, Task, Trajectory


class ScriptedTeacher:
    """Reaches the answer 42 unless the conversation holds a student step marked BAD (or the task is
    IMPOSSIBLE). Records, per generate call, how many assistant turns (prefix steps) each chat had."""

    name = "scripted-teacher"

    def __init__(self):
        self.calls: list[list[int]] = []

    def generate(self, chats, params):
        self.calls.append([sum(m["role"] == "assistant" for m in c) for c in chats])
        out = []
        for chat in chats:
            said = " ".join(m["content"] for m in chat if m["role"] == "assistant")
            if not any(m["role"] == "assistant" for m in chat):
                text = "<first_thought>Work it out.</first_thought>"
            elif "BAD" in said or "IMPOSSIBLE" in chat[1]["content"]:
                text = "<thought>Submit.</thought>\n<code>\nfinal_answer_print(41)\n</code>"
            else:
                text = "<thought>Submit.</thought>\n<code>\nfinal_answer_print(6 * 7)\n</code>"
            out.append(Completion(text=text, prompt_tokens=10, completion_tokens=5, seconds=0.01))
        return out


def student(tid: str, n: int, bad_at: int | None, finished: bool = True, question: str = "What is 6*7?") -> Trajectory:
    steps = [Step(kind="plan", thought="BAD plan" if bad_at == 0 else "Multiply.")]
    for i in range(1, n):
        mark = "BAD" if bad_at == i else "ok"
        steps.append(Step(thought=f"{mark} step {i}", code=f"v{i} = {i}\nprint(v{i})", observation=f"{i}\n"))
    final = None
    if finished:
        steps[-1].code += "\nfinal_answer_print(41)"
        steps[-1].final_answer = final = "41"
    return Trajectory(task=Task(id=tid, question=question, answer="42"), steps=steps, final_answer=final,
                      outcome="wrong" if finished else "unfinished")


@pytest.fixture(scope="module")
def pool():
    from score_distill.sandbox import SandboxConfig, SandboxPool

    return SandboxPool(SandboxConfig(), max_workers=2)


def make(pool, teacher, samples=2):
    return RolloutLocator(teacher, samples_per_prefix=samples, sandbox_pool=pool,
                          agent_config=AgentConfig(max_steps=8), tools_for=lambda t: {},
                          scorer=lambda t, a: float(a == t.answer))


def test_binary_search_finds_first_error_with_log_many_evaluations(pool):
    teacher = ScriptedTeacher()
    loc = make(pool, teacher)
    trajs = [
        student("a", 7, bad_at=2),          # ok(k) true for k <= 2: searches k = 3, 1, 2 -> error at step 2
        student("b", 4, bad_at=0),          # k = 2, 1, 0 -> error at step 0 (the plan)
        student("c", 3, bad_at=None, question="IMPOSSIBLE: what is 6*7?"),  # k = 1, 0 -> hard to teach
        student("d", 3, bad_at=None, finished=False),  # unfinished, no bad step: k = 2, 3 -> no error
        student("e", 5, bad_at=4),          # only the last step is bad: k = 2, 4 -> error at step 4
    ]
    trajs.append(Trajectory(task=Task(id="f", question="q", answer="42"), steps=[], outcome="correct",
                            final_answer="42"))
    vs = loc.locate(trajs)
    a, b, c, d, e, f = vs
    assert a.first_error_step == 2 and a.failure is None and "k=3: 0/2, k=1: 2/2, k=2: 2/2" in a.analysis
    assert b.first_error_step == 0 and "k=2: 0/2, k=1: 0/2, k=0: 2/2" in b.analysis
    assert c.hard_to_teach and "k=1: 0/2, k=0: 0/2" in c.analysis
    assert d.failure.startswith("no critical error") and "k=2: 2/2, k=3: 2/2" in d.analysis
    assert e.first_error_step == 4 and "k=2: 2/2, k=4: 2/2;" in e.analysis
    assert f.is_correct and f.usage.calls == 0
    # evaluations: at most ceil(log2(n + 1)) (+1 for the unknown end of an unfinished run)
    per = [3, 3, 2, 2, 2]
    assert loc.evaluations == sum(per)
    for t, k in zip(trajs, per):
        assert k <= math.ceil(math.log2(len(t.steps) + 1)) + (0 if t.finished else 1)
    # lock-step rounds: one run_episodes per round, all trajectories' prefixes in one generate batch.
    # Round 1 holds a(k=3), b(k=2), c(k=1), d(k=2), e(k=2): 5 prefixes x 2 samples, one step each.
    assert teacher.calls[0] == [3, 3, 2, 2, 1, 1, 2, 2, 2, 2]
    # cost in teacher tokens, only for generated steps: a made 3 evaluations x 2 samples x 1 step
    assert a.usage.calls == 6 and a.usage.prompt_tokens == 60 and a.usage.completion_tokens == 30
    # b's k=0 evaluation needs a plan and an action per sample: 2 + 2 + 2*2 steps
    assert b.usage.calls == 8
    assert loc.usage.calls == sum(v.usage.calls for v in vs)
    assert sum(len(c) for c in teacher.calls) == loc.usage.calls


def test_single_sample_and_delegation(pool):
    class Wrapped:
        name = "w"
        usage = None

        def correct(self, trajs, verdicts):
            return [StepProposal(Step(kind="plan", thought="p", origin="teacher")) for _ in trajs]

        def solve(self, tasks):
            return []

    teacher = ScriptedTeacher()
    loc = RolloutLocator(teacher, samples_per_prefix=1, sandbox_pool=pool, agent_config=AgentConfig(max_steps=8),
                         tools_for=lambda t: {}, scorer=lambda t, a: float(a == t.answer), teacher=Wrapped())
    (v,) = loc.locate([student("a", 2, bad_at=1)])  # k = 1 ok -> error at step 1
    assert v.first_error_step == 1 and loc.evaluations == 1 and teacher.calls == [[1]]
    (p,) = loc.correct([student("a", 2, bad_at=1)], [v])
    assert p.step.thought == "p" and loc.solve([]) == []
    with pytest.raises(ValueError):
        RolloutLocator(teacher, samples_per_prefix=0)
    assert isinstance(Verdict(False), Verdict)
