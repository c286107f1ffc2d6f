"""Rollout groups for SCoRe-RL: G continuations per item, from its verified prefix, through the agent loop.

The agent loop (:func:`score_distill.agent.loop.run_episodes`) does the multi-turn work: it replays
the prefix's code in a fresh sandbox (serving recorded search results), then generates and executes
steps until final_answer_print, the turn limit or the token budget; a final answer written on the
last allowed turn is executed and scored. This module adds the grouping, the reward, and the
token-level encoding of each rollout for the policy update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes
from score_distill.models.base import Policy, SamplingParams
from score_distill.rl.config import RLConfig
from score_distill.rl.equivalence import EquivalenceChecker
from score_distill.rl.items import RLItem
from score_distill.rl.reward import compute_rewards
from score_distill.training.chat_tokenize import tokenize_prompt_completion
from score_distill.trajectory import Step, Trajectory, steps_to_messages


@dataclass
class Rollout:
    item: RLItem
    group: int  # index of the item within the update's batch: advantages are normalised per group
    trajectory: Trajectory
    n_prefix: int  # steps given, not generated (0 in the long-horizon ablation)
    reward: float = 0.0
    reason: str = ""
    method: str = ""

    @property
    def new_steps(self) -> list[Step]:
        return self.trajectory.steps[self.n_prefix:]


def agent_config(cfg: RLConfig, seed: int | None) -> AgentConfig:
    # Plain sampling (no repetition penalty) so the sampled tokens follow the policy whose ratio we take.
    sampling = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, repetition_penalty=1.0,
                              max_new_tokens=cfg.max_new_tokens, seed=seed)
    return AgentConfig(max_steps=cfg.max_steps, max_new_tokens=cfg.max_new_tokens,
                       max_episode_tokens=cfg.max_episode_tokens, max_live_episodes=cfg.max_live_episodes,
                       sampling=sampling)


def episode_starts(items: list[RLItem], group_size: int, *, long_horizon: bool, tag: str = "") -> list[EpisodeStart]:
    starts = []
    for gi, item in enumerate(items):
        prefix = [] if long_horizon else item.prefix
        for j in range(group_size):
            starts.append(EpisodeStart(task=item.task, prefix=prefix, id=f"{item.id}/{tag}g{j}",
                                       meta={"rl_item": item.id, "group": gi, "member": j}))
    return starts


def run_rollouts(
    policy: Policy,
    items: list[RLItem],
    pool: Any,
    cfg: RLConfig,
    checker: EquivalenceChecker,
    *,
    tools_for: Callable | None = None,
    scorer: Callable | None = None,
    seed: int | None = None,
    tag: str = "",
    progress: str | None = None,
) -> list[Rollout]:
    """G rollouts per item (item-major), each with its reward and reason."""
    starts = episode_starts(items, cfg.group_size, long_horizon=cfg.long_horizon, tag=tag)
    trajs = run_episodes(policy, starts, pool, agent_config(cfg, seed), tools_for=tools_for, scorer=scorer,
                         progress=progress)
    if len(trajs) != len(starts):
        raise RuntimeError(f"agent loop returned {len(trajs)} trajectories for {len(starts)} episodes")
    rollouts = [Rollout(item=items[s.meta["group"]], group=s.meta["group"], trajectory=t, n_prefix=len(s.prefix))
                for s, t in zip(starts, trajs)]
    results = compute_rewards([r.item for r in rollouts], trajs, cfg.reward, checker, sparse=cfg.sparse_reward)
    for r, res in zip(rollouts, results):
        r.reward, r.reason, r.method = res.reward, res.reason, res.method
    return rollouts


def rollout_messages(rollout: Rollout) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(prompt, completion) chats. The prompt is what the model saw before its first new step.

    Assistant turns are the model's own text (``Step.raw`` when the parser had to clean it up), so
    the trained tokens are the sampled ones; observations are user turns and never trained. The
    observation after the last step is dropped: nothing is generated after it.
    """
    traj = rollout.trajectory
    prompt = steps_to_messages(traj.task, traj.steps[: rollout.n_prefix])
    completion: list[dict[str, str]] = []
    new = rollout.new_steps
    for i, s in enumerate(new):
        completion.append({"role": "assistant", "content": s.raw if s.raw is not None else s.render()})
        if i + 1 < len(new):
            completion.append({"role": "user", "content": s.render_observation()})
    return prompt, completion


def encode_rollout(tokenizer: Any, rollout: Rollout, max_seq_len: int) -> dict[str, Any] | None:
    """input_ids + loss_mask (1 on the new assistant turns' tokens only), or None when nothing was generated."""
    prompt, completion = rollout_messages(rollout)
    if not completion:
        return None
    enc = tokenize_prompt_completion(tokenizer, prompt, completion, max_length=max_seq_len)
    if not any(enc["assistant_mask"]):
        return None  # the prompt alone fills max_seq_len
    return {"input_ids": enc["input_ids"], "loss_mask": enc["assistant_mask"], "truncated": enc["truncated"],
            "prompt_length": enc["prompt_length"]}
