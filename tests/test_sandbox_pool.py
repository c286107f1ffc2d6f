"""The pool at its cap: episodes queue for a free interpreter, none is lost, the message is clear."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from score_distill.agent import format as fmt
from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes
from score_distill.sandbox import Sandbox, SandboxConfig, SandboxPool
from score_distill.sandbox.capacity import host_capacity
from score_distill.sandbox.pool import PoolFull
from score_distill.testing.scripted_policy import ScriptedPolicy, assistant_turns, question_of
from score_distill.trajectory import Task

CFG = SandboxConfig(timeout_s=10)
ROOT = os.geteuid() == 0


def test_host_capacity_names_its_bounds():
    cap = host_capacity(CFG)
    assert cap.live == max(1, min(cap.bounds.values())) == max(1, cap.bounds[cap.binding])
    assert "memory" in cap.bounds and cap.binding in cap.describe()
    with SandboxPool(CFG, warm=0) as pool:  # the pool's own cap comes from the same measurement
        assert pool.max_live >= 1 and "bound by" in pool.capacity_note and str(pool.max_live) in pool.capacity_note


def test_threads_wait_at_the_cap_and_no_episode_is_lost(caplog):
    caplog.set_level(logging.WARNING, logger="score_distill.sandbox.pool")
    peak, results = [0], {}
    with SandboxPool(CFG, max_workers=2, warm=1, max_live=2) as pool:
        def episode(i: int) -> None:
            sb = pool.new()
            try:
                peak[0] = max(peak[0], pool.live())
                sb.run(f"x = {i}")
                time.sleep(0.2)
                results[i] = sb.run("print(x * 10)").observation
            finally:
                sb.close()

        threads = [threading.Thread(target=episode, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert pool.waits > 0
        assert pool.live() <= 2
    assert results == {i: f"{i * 10}\n" for i in range(6)}
    assert peak[0] <= 2
    assert any("the new episode waits for one to close" in r.message for r in caplog.records)


def test_non_blocking_new_says_the_pool_is_full():
    with SandboxPool(CFG, warm=0, max_live=1) as pool:
        sb = pool.new()
        assert not pool.has_room()
        with pytest.raises(PoolFull, match="1 live interpreters"):
            pool.new(block=False)
        sb.close()
        assert pool.has_room()
        pool.new(block=False).close()


@pytest.mark.skipif(not ROOT, reason="exhausts the per-sandbox uid range (root host)")
def test_host_refusing_an_interpreter_lowers_the_cap_and_queues(caplog):
    """Real exhaustion: only two sandbox uids exist, the cap says five."""
    caplog.set_level(logging.WARNING, logger="score_distill.sandbox.pool")
    cfg = CFG.model_copy(update={"uid_range": (1_501_500, 1_501_502)})
    with SandboxPool(cfg, warm=0, max_live=5) as pool:
        a, b = pool.new(), pool.new()
        a.run("v = 'kept'")
        threading.Timer(1.0, b.close).start()
        c = pool.new()  # waits for b
        assert b.closed and pool.max_live == 2
        assert c.run("print(1)").observation == "1\n" and a.run("print(v)").observation == "kept\n"
        assert any("the host refused one more" in r.message and "no free sandbox uid" in r.message
                   for r in caplog.records)
        a.close()
        c.close()


@pytest.mark.skipif(not ROOT, reason="exhausts the per-sandbox uid range (root host)")
def test_refusal_with_nothing_live_to_wait_for_is_an_error():
    cfg = CFG.model_copy(update={"uid_range": (1_501_510, 1_501_511)})
    with Sandbox(cfg), SandboxPool(cfg, warm=0, max_live=4) as pool:  # the only uid is taken outside the pool
        with pytest.raises(RuntimeError, match="no free sandbox uid"):
            pool.new()


def _script(chat):
    n, q = assistant_turns(chat), question_of(chat)
    x = int(q.split()[-1].rstrip("?"))
    return [fmt.render_plan("double"), fmt.render_action("store", f"a = {x}\nprint(a)"),
            fmt.render_action("answer", "final_answer_print(a * 2)")][min(n, 2)]


def test_agent_loop_queues_episodes_beyond_the_pool(caplog):
    caplog.set_level(logging.WARNING, logger="score_distill.sandbox.pool")
    tasks = [Task(id=f"t{i}", question=f"What is twice {i + 3}?", answer=str(2 * (i + 3))) for i in range(7)]
    pol = ScriptedPolicy(_script)
    with SandboxPool(CFG, max_workers=2, warm=1, max_live=3) as pool:
        trajs = run_episodes(pol, [EpisodeStart(t) for t in tasks], pool,
                             AgentConfig(max_steps=5, max_live_episodes=64), tools_for=lambda t: {}, progress=None,
                             scorer=lambda t, a: float(a is not None and a.strip() == t.answer))
    assert [t.task.id for t in trajs] == [t.id for t in tasks] and all(t.correct for t in trajs)
    assert max(pol.batches) <= 3  # never more live episodes than the pool holds
    assert any("further episodes queue until one closes" in r.message for r in caplog.records)


def test_engine_rollouts_queue_episodes_beyond_the_pool(tmp_path):
    """The rollout engine's path admits lazily: at the pool's cap it goes on with the live rows instead of
    waiting in new() for an episode that only its own thread could end."""
    from score_distill.models.hf import TransformersPolicy
    from score_distill.models.tiny import build_tiny_model

    pol = TransformersPolicy.from_pretrained(build_tiny_model(tmp_path / "m", seed=0), batch_size=8)
    tasks = [Task(id=f"t{i}", question=f"What is twice {i + 3}?", answer=str(2 * (i + 3))) for i in range(6)]
    peak = []
    with SandboxPool(CFG, max_workers=2, warm=0, max_live=2) as pool:
        real_new = pool.new

        def counting_new(*a, **kw):
            sb = real_new(*a, **kw)
            peak.append(pool.live())
            return sb

        pool.new = counting_new
        done = []
        result: list = []
        worker = threading.Thread(target=lambda: result.extend(run_episodes(
            pol, [EpisodeStart(t) for t in tasks], pool, AgentConfig(max_steps=2, max_new_tokens=8,
                                                                     max_live_episodes=8),
            tools_for=lambda t: {}, progress=None, on_done=done.append)), daemon=True)
        worker.start()
        worker.join(timeout=300)
        assert not worker.is_alive(), "the engine waited on a full pool"
    assert [t.task.id for t in result] == [t.id for t in tasks] and len(done) == len(tasks)
    assert max(peak) <= 2


@pytest.mark.skipif(not ROOT, reason="exhausts the per-sandbox uid range (root host)")
@pytest.mark.parametrize("engine", [False, True], ids=["rounds", "engine"])
def test_agent_loop_queues_when_the_host_refuses_below_the_cap(engine, tmp_path):
    """Only two sandbox uids exist while the cap says five: the third episode's start is refused with two
    live. The loop admits without waiting in new() (which only this thread could end) and queues it."""
    cfg = CFG.model_copy(update={"uid_range": (1_501_520, 1_501_522)})
    tasks = [Task(id=f"t{i}", question=f"What is twice {i + 3}?", answer=str(2 * (i + 3))) for i in range(5)]
    if engine:
        from score_distill.models.hf import TransformersPolicy
        from score_distill.models.tiny import build_tiny_model

        pol = TransformersPolicy.from_pretrained(build_tiny_model(tmp_path / "m", seed=0), batch_size=8)
        agent = AgentConfig(max_steps=2, max_new_tokens=8, max_live_episodes=8)
    else:
        pol = ScriptedPolicy(_script)
        agent = AgentConfig(max_steps=5, max_live_episodes=8)
    result: list = []
    with SandboxPool(cfg, max_workers=2, warm=0, max_live=5) as pool:
        worker = threading.Thread(target=lambda: result.extend(run_episodes(
            pol, [EpisodeStart(t) for t in tasks], pool, agent, tools_for=lambda t: {}, progress=None)),
            daemon=True)
        worker.start()
        worker.join(timeout=300)
        assert not worker.is_alive(), "the loop waited in new() on a pool it holds itself"
        assert pool.max_live == 2
    assert [t.task.id for t in result] == [t.id for t in tasks]
