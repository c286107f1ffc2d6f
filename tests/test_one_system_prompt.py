"""One system prompt per task kind: the same trajectory renders to the same conversation in every path that
shows it to the student (MPS and evaluation through the agent loop, RL rollouts, SFT), and a per-stage
override, which made the stages train and test the student on different prompts, is refused."""

from __future__ import annotations

import pytest

from score_distill.agent import format as fmt
from score_distill.agent.loop import run_episodes
from score_distill.config import ConfigError, load_config
from score_distill.rl.rollout import Rollout, agent_config, rollout_messages
from score_distill.sandbox import SandboxPool
from score_distill.tasks.registry import make_tasks
from score_distill.testing.scripted_policy import ScriptedPolicy, assistant_turns
from score_distill.training.sft import _messages as sft_messages


def _solve(task):
    sol = [fmt.render_plan("compute, then answer"), fmt.render_action("compute", "x = 6 * 7\nprint(x)"),
           fmt.render_action("answer", "final_answer_print(x)")]
    seen = []

    def script(chat):
        seen.append([dict(m) for m in chat])
        return sol[min(assistant_turns(chat), 2)]

    return ScriptedPolicy(script), seen


@pytest.mark.parametrize("suite", ["math", "search"])
def test_every_path_renders_the_same_conversation(suite):
    cfg = load_config(preset="tiny")
    task = make_tasks(suite, 1, 2, seed=5, split="train")[0]
    pool = SandboxPool(cfg.sandbox, max_workers=1)
    try:
        from score_distill.pipeline import RunContext

        tools_for = RunContext.open(cfg, "unused").res.tools_for
        policy, seen_agent = _solve(task)
        (traj,) = run_episodes(policy, [_start(task)], pool, cfg.agent, tools_for=tools_for, progress=None)
        rl_policy, seen_rl = _solve(task)
        run_episodes(rl_policy, [_start(task)], pool, agent_config(cfg.rl_config(), 0), tools_for=tools_for,
                     progress=None)
    finally:
        pool.close()
    assert len(traj.steps) == 3 and len(seen_agent) == 3
    system = fmt.system_prompt(task.tools)
    # MPS and evaluation (cfg.agent) and RL rollouts (RL's agent settings) show the task kind's prompt.
    assert seen_agent[0][0] == {"role": "system", "content": system}
    assert [c[0] for c in seen_rl] == [c[0] for c in seen_agent]
    # What the student saw before its last step is what SFT trains on and what RL takes as its prompt.
    last = seen_agent[-1]
    for sft in (cfg.bc.sft, cfg.bc_baseline.sft, cfg.score_sft.sft):
        msgs = [{k: v for k, v in m.items() if k != "train"} for m in sft_messages(traj, sft)]
        assert msgs[: len(last)] == last
    prompt, _ = rollout_messages(Rollout(item=None, group=0, trajectory=traj, n_prefix=2))
    assert prompt == last


def _start(task):
    from score_distill.agent.loop import EpisodeStart

    return EpisodeStart(task, id=f"t-{task.id}")


@pytest.mark.parametrize("key", ["agent.system_prompt", "bc.sft.system_prompt", "score_sft.sft.system_prompt"])
def test_a_per_stage_system_prompt_is_refused_naming_the_field(key):
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')} is no longer supported"):
        load_config(preset="tiny", overrides=[f"{key}=be brief"])
