"""Mentored Problem Solving with the oracle teacher on the built-in suites, using a scripted student
that makes a known first error: corrections land at the injected error, prefixes are verified, counts
add up, and a resumed run equals an uninterrupted one."""

import pytest

from score_distill.agent import format as fmt
from score_distill.agent.loop import AgentConfig
from score_distill.sandbox import SandboxConfig, SandboxPool
from score_distill.stages.mps import CORRECTED, EXHAUSTED, SOLVED_ALONE, MPSConfig, mps_statistics, run_mps
from score_distill.tasks.registry import make_tasks
from score_distill.teachers.oracle import OracleTeacher
from score_distill.testing.scripted_policy import ScriptedPolicy, assistant_turns, question_of
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import read_jsonl


@pytest.fixture(scope="module")
def pool():
    p = SandboxPool(SandboxConfig(timeout_s=10), max_workers=4)
    yield p
    p.close()


def off_chain_entity(task, tasks) -> str:
    """A real knowledge-base entity (tasks of one call share a knowledge base) not on this task's chain."""
    chain = set(task.meta.get("chain", []))
    return next(e for t in tasks for e in t.meta.get("chain", []) if e not in chain)


def wrong_step(sol_step: dict, off_entity: str = "nobody") -> str:
    var = sol_step.get("var", "x")
    if "final_answer_print" in sol_step["code"]:
        return fmt.render_action("I submit the answer.", "final_answer_print('not the answer')")
    if "web_search" in sol_step["code"]:
        # A wrong search: the right call shape, an entity that is not on the question's chain.
        return fmt.render_action("I search.", f"{var} = web_search({off_entity!r})\nprint({var})")
    return fmt.render_action("I compute it.", f"{var} = 987654321\nprint({var})")




def student_with_error_at(tasks, error_at: dict):
    """Follows each task's ground-truth solution, except from step error_at[task.id] on: once its own wrong
    step is in the conversation it stays wrong (errors compound); a teacher's correction removes it."""
    by_q = {t.question: t for t in tasks}

    def script(chat):
        task = by_q[question_of(chat)]
        sol = task.meta["solution"]
        n = assistant_turns(chat)
        if n >= len(sol):
            return fmt.render_action("done", "print('stuck')")
        off = off_chain_entity(task, tasks) if task.meta.get("chain") else "nobody"
        markers = ("987654321", off, "not the answer")
        derailed = any(m["role"] == "assistant" and any(w in m["content"] for w in markers) for m in chat)
        if error_at.get(task.id) == n or (derailed and sol[n]["kind"] == "action"):
            return wrong_step(sol[n], off)
        s = sol[n]
        return fmt.render_plan(s["thought"]) if s["kind"] == "plan" else fmt.render_action(s["thought"], s["code"])

    return ScriptedPolicy(script)


@pytest.mark.parametrize("suite", ["math", "search"])
def test_corrections_land_at_the_injected_error(pool, tmp_path, suite):
    h = 3
    tasks = make_tasks(suite, 6, h, seed=5, split="train")
    n_steps = len(tasks[0].meta["solution"])
    # task i gets its first error at action step 1 + (i % (n_steps - 1)); task 5 makes none.
    error_at = {t.id: 1 + i % (n_steps - 1) for i, t in enumerate(tasks[:5])}
    student = student_with_error_at(tasks, error_at)
    agent = AgentConfig(max_steps=n_steps + 2, max_new_tokens=64)
    recs = run_mps(student, OracleTeacher(sandbox_pool=pool), tasks, pool, agent, MPSConfig(max_corrections=3),
                   tmp_path / "mps.jsonl")
    assert [r.task.id for r in recs] == [t.id for t in tasks]
    for r in recs:
        if r.task.id not in error_at:
            assert r.meta["mps_status"] == SOLVED_ALONE and not r.corrections
            continue
        assert r.meta["mps_status"] == CORRECTED, (r.meta, [s.render() for s in r.steps])
        assert r.correct and len(r.corrections) == 1
        c = r.corrections[0]
        assert c.step_index == error_at[r.task.id] and c.valid
        # The verified prefix is the student's steps before the error, unchanged, and is the trajectory's start.
        assert [s.render() for s in c.prefix] == [s.render() for s in r.steps[: c.step_index]]
        assert r.steps[c.step_index].origin == "teacher" and c.chosen.observation == r.steps[c.step_index].observation
        off = off_chain_entity(r.task, tasks) if suite == "search" else "nobody"
        assert c.rejected.code == fmt.parse_action(wrong_step(r.task.meta["solution"][c.step_index], off)).code
        assert c.rejected.origin == "student" and c.rejected.render() != c.chosen.render()
        assert all(s.origin == "student" for i, s in enumerate(r.steps) if i != c.step_index)
    stats = mps_statistics(recs)
    assert stats["n_tasks"] == 6 and stats["corrections_hist"]["0"] == 1 and stats["corrections_hist"]["1"] == 5
    assert sum(stats["first_error_hist"].values()) == 5 and stats["retained"] == 6


def test_repeated_errors_use_several_corrections_and_invalidate_cut_ones(pool, tmp_path):
    tasks = make_tasks("math", 2, 3, seed=9, split="train")
    by_q = {t.question: t for t in tasks}

    def script(chat):  # always wrong at step 2; the teacher must correct it, then the student errs at 3
        task = by_q[question_of(chat)]
        sol = task.meta["solution"]
        n = assistant_turns(chat)
        if n in (2, 3):  # wrong at 2; after the teacher fixes 2, wrong again at 3
            return wrong_step(sol[n])
        s = sol[min(n, len(sol) - 1)]
        return fmt.render_plan(s["thought"]) if s["kind"] == "plan" else fmt.render_action(s["thought"], s["code"])

    recs = run_mps(ScriptedPolicy(script), OracleTeacher(sandbox_pool=pool), tasks, pool,
                   AgentConfig(max_steps=7), MPSConfig(max_corrections=3), tmp_path / "mps.jsonl")
    for r in recs:
        assert r.correct and [c.step_index for c in r.corrections] == [2, 3]
        assert all(c.valid for c in r.corrections)
        assert [s.origin for s in r.steps[:4]] == ["student", "student", "teacher", "teacher"]


def test_a_corrected_task_continues_while_slower_tasks_still_make_their_first_attempt(pool, tmp_path):
    """No round barrier: a task goes to the teacher when its own episode ends, and its continuation runs beside
    the episodes still going (here a first attempt that stalls three steps before solving)."""
    fast, slow = make_tasks("math", 2, 3, seed=4, split="train")
    calls: list[list[str]] = []

    def script(chat):
        task = fast if question_of(chat) == fast.question else slow
        sol, n = task.meta["solution"], assistant_turns(chat)
        if task is fast:
            if n == 1:  # a wrong answer at once: the teacher replaces step 1, and the student goes on from it
                return fmt.render_action("I submit the answer.", "final_answer_print('not the answer')")
            s = sol[min(n, len(sol) - 1)]
        else:
            if 1 <= n <= 3:
                return fmt.render_action("I think it over.", "print('thinking')")
            s = sol[0] if n == 0 else sol[min(n - 3, len(sol) - 1)]
        return fmt.render_plan(s["thought"]) if s["kind"] == "plan" else fmt.render_action(s["thought"], s["code"])

    class Logging(ScriptedPolicy):
        def generate(self, chats, params):
            calls.append(["fast-continued" if question_of(c) == fast.question and assistant_turns(c) >= 2
                          else "fast" if question_of(c) == fast.question else "slow" for c in chats])
            return super().generate(chats, params)

    recs = run_mps(Logging(script), OracleTeacher(sandbox_pool=pool), [fast, slow], pool, AgentConfig(max_steps=8),
                   MPSConfig(max_corrections=3), tmp_path / "mps.jsonl")
    assert [r.meta["mps_status"] for r in recs] == [CORRECTED, SOLVED_ALONE]
    assert [c.step_index for c in recs[0].corrections] == [1]
    assert any("fast-continued" in c and "slow" in c for c in calls), calls


def test_no_corrections_allowed_leaves_task_exhausted(pool, tmp_path):
    tasks = make_tasks("math", 1, 2, seed=3, split="train")
    student = student_with_error_at(tasks, {tasks[0].id: 1})
    recs = run_mps(student, OracleTeacher(sandbox_pool=pool), tasks, pool, AgentConfig(max_steps=5),
                   MPSConfig(max_corrections=0), tmp_path / "m.jsonl")
    assert recs[0].meta["mps_status"] == EXHAUSTED and not recs[0].correct


def test_resumed_run_equals_uninterrupted_run(pool, tmp_path):
    tasks = make_tasks("search", 6, 2, seed=11, split="train")
    error_at = {t.id: 1 + i % 2 for i, t in enumerate(tasks[:4])}
    agent = AgentConfig(max_steps=6)
    cfg = MPSConfig(max_corrections=2, chunk_size=2)
    full = run_mps(student_with_error_at(tasks, error_at), OracleTeacher(sandbox_pool=pool), tasks, pool, agent, cfg,
                   tmp_path / "full.jsonl")

    class Crash(Exception):
        pass

    def crash_after_first(i, n):
        if i == 1:
            raise Crash

    part = tmp_path / "part.jsonl"
    with pytest.raises(Crash):
        run_mps(student_with_error_at(tasks, error_at), OracleTeacher(sandbox_pool=pool), tasks, pool, agent, cfg,
                part, on_chunk=crash_after_first)
    assert len(read_jsonl(part, Trajectory)) == 2
    resumed = run_mps(student_with_error_at(tasks, error_at), OracleTeacher(sandbox_pool=pool), tasks, pool, agent,
                      cfg, part)
    on_disk = read_jsonl(part, Trajectory)
    assert [r.task.id for r in on_disk] == [t.id for t in tasks]  # none duplicated, none lost
    strip = lambda r: [(s.render(), s.observation, s.origin) for s in r.steps] + [  # noqa: E731
        (c.step_index, c.valid) for c in r.corrections]
    assert [strip(r) for r in resumed] == [strip(r) for r in full]


class _Rewriting:
    """The oracle, except that its replacement steps are rewritten (a teacher that leaks or talks)."""

    def __init__(self, inner, rewrite):
        self.inner, self.rewrite, self.name = inner, rewrite, "rewriting-oracle"
        self.usage = inner.usage

    def solve(self, tasks):
        return self.inner.solve(tasks)

    def locate(self, trajectories):
        return self.inner.locate(trajectories)

    def correct(self, trajectories, verdicts):
        props = self.inner.correct(trajectories, verdicts)
        for t, p in zip(trajectories, props):
            p.step = self.rewrite(t.task, p.step)
        return props


@pytest.mark.parametrize("guard", ["answer_leak", "correction_talk"])
def test_every_teachers_step_passes_the_guards_and_a_violation_is_recorded_not_trained(pool, tmp_path, guard):
    from score_distill.rl.items import build_rl_items
    from score_distill.stages.split import SplitConfig, split_mps

    def rewrite(task, step):
        if guard == "answer_leak":
            return step.model_copy(update={"code": f"final_answer_print({task.answer!r})"})
        return step.model_copy(update={"thought": "To correct the mistake, " + step.thought})

    tasks = make_tasks("math", 2, 3, seed=5, split="train")
    student = student_with_error_at(tasks, {t.id: 2 for t in tasks})
    teacher = _Rewriting(OracleTeacher(sandbox_pool=pool), rewrite)
    recs = run_mps(student, teacher, tasks, pool, AgentConfig(max_steps=6), MPSConfig(max_corrections=3),
                   tmp_path / "mps.jsonl")
    for r in recs:
        assert r.meta["mps_status"] == "failed" and r.meta["failure"].startswith(f"guard: {guard}")
        g = r.meta["guard_violation"]
        assert g["guard"] == guard and g["step_index"] == 2 and g["teacher"] == "rewriting-oracle"
        assert not r.corrections and all(s.origin == "student" for s in r.steps)
    on_disk = read_jsonl(tmp_path / "mps.jsonl", Trajectory)
    assert all(r.meta["guard_violation"]["guard"] == guard for r in on_disk)
    sft, _ = split_mps(recs, SplitConfig(sft_share=1.0), seed=0)
    assert sft == []
    items = build_rl_items(recs, sft_task_ids=[])
    assert all(it.kind == "question_only" for it in items)
    assert mps_statistics(recs)["failures_by_cause"] == {f"guard: {guard}": 2}
