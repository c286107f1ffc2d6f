"""The batched agent loop with a scripted policy and the real sandbox."""

import pytest

from score_distill.agent import format as fmt
from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes
from score_distill.testing.scripted_policy import ScriptedPolicy, assistant_turns, question_of
from score_distill.trajectory import Step, Task


def exact(task, answer):
    return float(answer is not None and answer.strip() == str(task.answer))


def no_tools(task):
    return {}


@pytest.fixture(scope="module")
def sandbox_workers():
    return 4  # the batched loop keeps several episodes live at once


def arithmetic_script(chat):
    """Plan, then a = first number, then b = a * 2, then the final answer."""
    n = assistant_turns(chat)
    q = question_of(chat)
    x = int(q.split()[-1].rstrip("?"))
    return [
        fmt.render_plan("double the number"),
        fmt.render_action("store it", f"a = {x}\nprint(a)"),
        fmt.render_action("double it", "b = a * 2\nprint(b)"),
        fmt.render_action("answer", "final_answer_print(b)"),
    ][min(n, 3)]


def tasks(n):
    return [Task(id=f"t{i}", question=f"What is twice {i + 3}?", answer=str(2 * (i + 3))) for i in range(n)]


def test_episodes_run_batched_and_state_persists(pool):
    pol = ScriptedPolicy(arithmetic_script)
    trajs = run_episodes(pol, [EpisodeStart(t) for t in tasks(5)], pool, AgentConfig(max_steps=6),
                         tools_for=no_tools, scorer=exact, progress=None)
    assert [t.outcome for t in trajs] == ["correct"] * 5
    assert [len(t.steps) for t in trajs] == [4] * 5
    assert trajs[2].steps[2].observation.strip() == "10"  # b = a * 2 used the variable from the previous step
    assert pol.batches == [5, 5, 5, 5]  # one generate call per round for all live episodes


def test_step_limit_leaves_episode_unfinished_and_last_turn_is_executed(pool):
    pol = ScriptedPolicy(arithmetic_script)
    trajs = run_episodes(pol, [EpisodeStart(t) for t in tasks(2)], pool, AgentConfig(max_steps=3),
                         tools_for=no_tools, scorer=exact, progress=None)
    assert all(t.outcome == "unfinished" and len(t.steps) == 3 for t in trajs)
    trajs = run_episodes(pol, [EpisodeStart(t) for t in tasks(1)], pool, AgentConfig(max_steps=4),
                         tools_for=no_tools, scorer=exact, progress=None)
    assert trajs[0].outcome == "correct"  # the final answer on the last allowed turn counts


def test_live_limit_admits_episodes_continuously(pool):
    pol = ScriptedPolicy(arithmetic_script)
    trajs = run_episodes(pol, [EpisodeStart(t) for t in tasks(5)], pool,
                         AgentConfig(max_steps=6, max_live_episodes=2), tools_for=no_tools, scorer=exact,
                         progress=None)
    assert max(pol.batches) == 2 and all(t.correct for t in trajs)
    assert [t.task.id for t in trajs] == [f"t{i}" for i in range(5)]


def test_start_from_prefix_replays_state(pool):
    t = tasks(1)[0]
    prefix = [Step(kind="plan", thought="double"), Step(thought="store", code="a = 3\nprint(a)", observation="3\n")]
    pol = ScriptedPolicy(arithmetic_script)
    trajs = run_episodes(pol, [EpisodeStart(t, prefix=prefix)], pool, AgentConfig(max_steps=6),
                         tools_for=no_tools, scorer=exact, progress=None)
    assert trajs[0].correct and len(trajs[0].steps) == 4
    assert pol.batches == [1, 1]  # only the two new steps were generated


def test_execute_last_runs_the_new_step(pool):
    t = tasks(1)[0]
    teacher_step = Step(thought="store", code="a = 3\nprint(a * 100)", origin="teacher")
    pol = ScriptedPolicy(arithmetic_script)
    trajs = run_episodes(pol, [EpisodeStart(t, prefix=[Step(kind="plan", thought="p"), teacher_step],
                                            execute_last=True)],
                         pool, AgentConfig(max_steps=6), tools_for=no_tools, scorer=exact, progress=None)
    assert trajs[0].steps[1].observation.strip() == "300" and trajs[0].steps[1].origin == "teacher"
    assert trajs[0].correct


def test_broken_output_is_a_format_error_not_a_crash(pool):
    pol = ScriptedPolicy(lambda chat: "I don't know how to write code." if assistant_turns(chat) else "plan")
    trajs = run_episodes(pol, [EpisodeStart(tasks(1)[0])], pool, AgentConfig(max_steps=3),
                         tools_for=no_tools, scorer=exact, progress=None)
    t = trajs[0]
    assert t.outcome == "unfinished" and t.format_error_count >= 3
    from score_distill.agent.loop import NO_CODE_OBSERVATION

    assert t.steps[1].observation == NO_CODE_OBSERVATION


def test_host_tool_calls_are_recorded(pool):
    calls = []

    def search(q):
        calls.append(q)
        return f"doc about {q}"

    def script(chat):
        n = assistant_turns(chat)
        return [fmt.render_plan("search"), fmt.render_action("look", 'r = web_search("zorvex")\nprint(r)'),
                fmt.render_action("done", 'final_answer_print("x")')][min(n, 2)]

    task = Task(id="s", question="q", answer="x", tools=["python", "web_search", "final_answer_print"])
    trajs = run_episodes(ScriptedPolicy(script), [EpisodeStart(task)], pool, AgentConfig(),
                         tools_for=lambda t: {"web_search": search}, scorer=exact, progress=None)
    st = trajs[0].steps[1]
    assert calls == ["zorvex"] and st.tool_calls[0].result == "doc about zorvex"
    # Replaying from this prefix serves the recorded result instead of searching again.
    run_episodes(ScriptedPolicy(script), [EpisodeStart(task, prefix=trajs[0].steps[:2])], pool, AgentConfig(),
                 tools_for=lambda t: {"web_search": search}, scorer=exact, progress=None)
    assert calls == ["zorvex"]


def test_agent_loop_with_a_tiny_random_model(pool):
    from score_distill.models.base import SamplingParams
    from score_distill.models.hf import TransformersPolicy
    from score_distill.tasks.registry import make_tasks

    policy = TransformersPolicy("tiny", batch_size=8)
    tasks = make_tasks("math", 3, 2, seed=0, split="eval")
    cfg = AgentConfig(max_steps=3, max_new_tokens=16, sampling=SamplingParams(temperature=1.0, seed=0))
    trajs = run_episodes(policy, [EpisodeStart(t) for t in tasks], pool, cfg, progress=None)
    assert len(trajs) == 3
    for t in trajs:
        assert t.steps[0].kind == "plan" and 1 <= len(t.steps) <= 3
        assert all(s.completion_tokens > 0 for s in t.steps)
        assert t.outcome in ("unfinished", "wrong", "correct")


@pytest.mark.smollm
def test_agent_loop_with_smollm2_on_two_tasks(pool):
    from score_distill.models.base import SamplingParams
    from score_distill.models.hf import TransformersPolicy
    from score_distill.tasks.registry import make_tasks

    policy = TransformersPolicy("smollm2-135m", batch_size=2)
    tasks = make_tasks("math", 1, 2, seed=0, split="eval") + make_tasks("search", 1, 2, seed=0, split="eval")
    cfg = AgentConfig(max_steps=3, max_new_tokens=96, sampling=SamplingParams(temperature=0.0))
    trajs = run_episodes(policy, [EpisodeStart(t) for t in tasks], pool, cfg, progress=None)
    assert [t.task.id for t in trajs] == [t.id for t in tasks]
    for t in trajs:
        assert t.steps[0].kind == "plan" and t.steps[0].thought
        actions = [s for s in t.steps[1:]]
        assert actions, "SmolLM2 wrote no action step"
        # Every action is answered (the sandbox's output, or the no-code notice: the untrained model often
        # writes prose, and since it continues from its own turns as written, nothing re-renders them as code).
        assert all(s.observation for s in actions), [s.raw or s.render() for s in actions]
        # Token in, token out: each turn's recorded ids are what the model sampled, its text is their decoding.
        for s in t.steps:
            assert s.tokens.sampled and s.completion_tokens == len(s.tokens.ids)
            text = policy.tokenizer.decode(s.tokens.ids, skip_special_tokens=True)
            assert text.strip().startswith((s.raw if s.raw is not None else s.render()).strip()[:20])


@pytest.mark.smollm
def test_a_slow_cell_parks_its_episode_while_the_others_decode(pool, monkeypatch):
    """The first cell any episode runs waits 1.5 s behind a slow cell: its row is parked, the other episodes
    decode on, and every trajectory is the one an undelayed run writes (greedy: same turns, ids, observations)."""
    from score_distill.models.base import SamplingParams
    from score_distill.models.hf import TransformersPolicy
    from score_distill.tasks.registry import make_tasks

    policy = TransformersPolicy("smollm2-135m", batch_size=3)
    engines = []
    make_engine = policy.rollout_engine

    def spy(*args):
        engines.append(make_engine(*args))
        return engines[-1]

    monkeypatch.setattr(policy, "rollout_engine", spy)
    tasks = make_tasks("math", 3, 2, seed=0, split="eval")
    cfg = AgentConfig(max_steps=3, max_new_tokens=64, sampling=SamplingParams(temperature=0.0))
    now = run_episodes(policy, [EpisodeStart(t) for t in tasks], pool, cfg, progress=None)
    assert engines[-1].stats["parked_turns"] == 0

    delayed = []

    def slow_submit(sb, code, recorded=None):
        def run():  # a slow cell in that interpreter (it binds no name), then the step's own
            sb.run("__import__('time').sleep(1.5)")
            return sb.run(code, recorded)

        if not delayed:
            delayed.append(code)
            return pool._executor.submit(run)
        return submit(sb, code, recorded)

    submit = pool.submit
    monkeypatch.setattr(pool, "submit", slow_submit)
    later = run_episodes(policy, [EpisodeStart(t) for t in tasks], pool, cfg, progress=None)
    stats = engines[-1].stats
    assert delayed and stats["parked_turns"] >= 1
    assert stats["parked_row_steps"] >= 1  # other rows took steps while it waited
    for a, b in zip(later, now):
        assert [s.tokens.ids for s in a.steps] == [s.tokens.ids for s in b.steps]
        assert [s.tokens.after for s in a.steps] == [s.tokens.after for s in b.steps]
        assert [s.observation for s in a.steps] == [s.observation for s in b.steps]
