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
    on_done: Callable[[Trajectory], None] | None = None,
) -> list[Rollout]:
    """G rollouts per item (item-major), each with its reward and reason. ``on_done``: called as each rollout's
    episode ends (the RL stage counts them on its bar of updates); ``progress``: a bar of its own for them."""
    starts = episode_starts(items, cfg.group_size, long_horizon=cfg.long_horizon, tag=tag)
    trajs = run_episodes(policy, starts, pool, agent_config(cfg, seed), tools_for=tools_for, scorer=scorer,
                         progress=progress, on_done=on_done)
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
    prompt = steps_to_messages(traj.task, traj.steps[: rollout.n_prefix], as_written=True)
    completion: list[dict[str, str]] = []
    new = rollout.new_steps
    for i, s in enumerate(new):
        completion.append({"role": "assistant", "content": s.turn_text()})
        if i + 1 < len(new):
            completion.append({"role": "user", "content": s.render_observation()})
    return prompt, completion


def rollout_ids(rollout: Rollout, space: str | None = None) -> dict[str, Any] | None:
    """Token in, token out: the rollout's sequence exactly as the engine's context held it, or None when
    the trajectory has no recorded ids (a backend without an engine) or they belong to another tokenizer.

    ``input_ids`` = prompt ids, then for every step its turn's ids and the ids appended after it (the
    last step's are dropped: nothing was generated after them). ``loss_mask`` is 1 on the ids the policy
    sampled in the new steps, 0 on the prefix, the observations and the template's glue (an end-of-turn
    token the model sampled is trained; one the glue added after a stop string is not). ``old_logprobs``
    are the sampling-time log-probabilities of the trained ids (0 elsewhere).
    """
    traj = rollout.trajectory
    steps = traj.steps
    if traj.prompt_ids is None or any(s.tokens is None for s in steps):
        return None
    if space is not None and any(s.tokens.space != space for s in steps):
        return None
    ids, mask, logps = list(traj.prompt_ids), [0] * len(traj.prompt_ids), [0.0] * len(traj.prompt_ids)
    prompt_length = None
    for i, s in enumerate(steps):
        tt = s.tokens
        trained = i >= rollout.n_prefix and tt.sampled
        if i == rollout.n_prefix:
            prompt_length = len(ids)
        ids += tt.ids
        mask += [int(trained)] * len(tt.ids)
        lp = tt.logprobs if trained and tt.logprobs is not None and len(tt.logprobs) == len(tt.ids) else None
        logps += lp if lp is not None else [0.0] * len(tt.ids)
        if i + 1 < len(steps):
            ids += tt.after
            mask += [0] * len(tt.after)
            logps += [0.0] * len(tt.after)
    return {"input_ids": ids, "loss_mask": mask, "old_logprobs": logps,
            "prompt_length": len(ids) if prompt_length is None else prompt_length}


def encode_rollout(tokenizer: Any, rollout: Rollout, max_seq_len: int) -> dict[str, Any] | None:
    """input_ids + loss_mask (1 on the new assistant turns' sampled tokens only) + old_logprobs (the
    sampling-time log-probabilities at those positions, 0 elsewhere; None when the backend gave none),
    or None when nothing was generated. Ids recorded by the engine are used as they are
    (:func:`rollout_ids`); otherwise the turns' text is tokenized with the chat template."""
    enc = None
    if rollout.new_steps:
        from score_distill.engine.chat import token_space

        enc = rollout_ids(rollout, token_space(tokenizer))
    if enc is not None:
        truncated = max(0, len(enc["input_ids"]) - max_seq_len)
        if truncated:
            for k in ("input_ids", "loss_mask", "old_logprobs"):
                enc[k] = enc[k][:max_seq_len]
        if not any(enc["loss_mask"]):
            return None
        return {**enc, "truncated": truncated}
    prompt, completion = rollout_messages(rollout)
    if not completion:
        return None
    enc = tokenize_prompt_completion(tokenizer, prompt, completion, max_length=max_seq_len)
    if not any(enc["assistant_mask"]):
        return None  # the prompt alone fills max_seq_len
    return {"input_ids": enc["input_ids"], "loss_mask": enc["assistant_mask"], "truncated": enc["truncated"],
            "prompt_length": enc["prompt_length"], "old_logprobs": None}
