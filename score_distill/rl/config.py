"""Configuration of SCoRe-RL: items, reward weights, equivalence checks, rollouts and the GRPO update.

Defaults are the reference settings (docs/method.md section 2, stage 3) where they are known;
``RLConfig.cpu_preset()`` shrinks them so a tiny model trains in seconds on a laptop.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemsConfig(_Cfg):
    """Which MPS trajectories become RL items (reference: unsolved kept with p=0.5, solved alone with p=0.1)."""

    keep_unsolved_prob: float = Field(0.5, ge=0, le=1, description="Tasks without a usable correction, not solved.")
    keep_solved_prob: float = Field(0.1, ge=0, le=1, description="Tasks the student solved without help.")
    require_verified: bool = Field(
        True, description="Key-step items only from corrected trajectories whose final answer is correct."
    )
    seed: int = 0


class RewardWeights(_Cfg):
    """Key-step reward (hand-set in the paper, configuration here).

    Order of checks: correct final answer -> ``correct``; no final answer at all -> ``no_final_answer``
    (the released code gives 0 to a rollout that never calls final_answer_print, and so do we unless
    ``key_step_credit_without_final_answer``); otherwise the key step decides: equivalent to the
    teacher's step -> ``teacher_equivalent``, to the original wrong step -> ``repeats_mistake``,
    a key step that itself submits a wrong answer -> ``answers_wrong`` (0, as the reference scores it),
    anything else -> ``other``.
    """

    correct: float = 1.0
    teacher_equivalent: float = 0.5
    repeats_mistake: float = 0.0
    other: float = 0.1
    no_final_answer: float = 0.0
    wrong: float = 0.0  # outcome-only items (no correction) and the sparse-reward ablation
    answers_wrong: float = 0.0
    key_step_credit_without_final_answer: bool = False
    wrong_answer_key_step_earns_other: bool = Field(
        False, description="Old rule, off by default: a key step that itself submits a wrong answer earns `other` "
        "(0.1) instead of `answers_wrong` (0, the reference's value).")


class EquivalenceConfig(_Cfg):
    """How a rollout's key step is compared with the teacher's and the student's original step."""

    same_code: bool = Field(True, description="Same code after AST normalisation (names canonicalised).")
    same_observation: bool = Field(True, description="Same non-empty, error-free execution output.")
    silent_outputs_match: bool = Field(
        False, description="Old rule, off by default: two steps that both print nothing ('(no output)') count as "
        "the same result. The reference compares what a step computed; an empty output shows nothing.")
    plan_similarity: float = Field(0.8, ge=0, le=1, description="difflib ratio at/above which two plans match.")
    use_judge: bool = Field(False, description="Ask an LLM judge when the deterministic checks say no.")
    judge_cache: str | None = Field(
        None, description="JSONL cache of judge verdicts (default: out_dir/judge_cache.jsonl)."
    )
    judge_max_new_tokens: int = 256


class LoraSettings(_Cfg):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"


class RLConfig(_Cfg):
    # --- data and schedule
    group_size: int = Field(16, ge=2, description="Rollouts per item (G).")
    items_per_update: int = Field(128, ge=1, description="Items (prompts) per policy update.")
    epochs: int = Field(3, ge=1)
    max_updates: int | None = Field(None, description="Stop after this many updates (None: all epochs).")
    seed: int = 0
    # --- rollouts
    max_steps: int = Field(8, ge=1, description="Turn limit of a whole episode, the prefix included.")
    max_new_tokens: int = Field(512, ge=1, description="Token limit for one step.")
    max_episode_tokens: int | None = Field(4096, description="Generated tokens for a rollout's new steps.")
    max_seq_len: int = Field(8192, ge=16, description="Training sequences are cut to this many tokens.")
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_live_episodes: int = 64
    draft_tokens: int = Field(0, ge=0, description="Speculative decoding of in-process rollouts (prompt lookup, "
                              "ids verified per step); in a run, student.draft_tokens unless set here.")
    rollout_backend: Literal["inprocess", "vllm"] = Field(
        "inprocess",
        description="inprocess: the trained model generates (CPU, tests); vllm: trl vllm-serve + NCCL weight sync.",
    )
    vllm_base_url: str = "http://127.0.0.1:8000"
    vllm_model: str = ""
    # --- ablations (docs/method.md: RL without short horizon / without key-step reward)
    long_horizon: bool = Field(False, description="Start rollouts from the task, not from the verified prefix.")
    sparse_reward: bool = Field(False, description="Outcome reward only (no key-step credit).")
    # --- which MPS records become items
    items: ItemsConfig = Field(default_factory=ItemsConfig)
    # --- reward
    reward: RewardWeights = Field(default_factory=RewardWeights)
    equivalence: EquivalenceConfig = Field(default_factory=EquivalenceConfig)
    # --- optimisation
    lr: float = 7e-7
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    clip_eps: float = Field(0.2, ge=0, description="PPO clip range of the importance ratio.")
    clip_eps_high: float | None = Field(None, description="Upper clip (DAPO clip-higher); None: same as clip_eps.")
    adv_eps: float = Field(1e-4, gt=0, description="eps in (R - mean) / (std + eps).")
    kl_coef: float = Field(0.0, ge=0, description="k3 KL to the reference model (reference: 0).")
    ppo_epochs: int = Field(
        1, ge=1, description="Passes over one batch of rollouts (mu), each through all mini-batches."
    )
    mini_batch_size: int | None = Field(
        16, ge=1, description="Items (each with its G rollouts) per optimizer step: ceil(items_per_update / "
        "mini_batch_size) steps per rollout batch, old log-probs taken once before them (reference: 128 / 16 = 8 "
        "steps). None: one step per batch (ratio 1, no clipping).")
    micro_batch_size: int = Field(4, ge=1, description="Sequences per forward/backward; the rest is grad accumulation.")
    skip_zero_advantage: bool = Field(True, description="Drop groups whose rewards are all equal (no signal).")
    lora: LoraSettings | None = None
    gradient_checkpointing: bool = False
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    save_every: int = Field(1, ge=1, description="Checkpoint every N updates.")
    keep_checkpoints: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if self.rollout_backend == "vllm" and not self.vllm_model:
            raise ValueError("rollout_backend='vllm' needs vllm_model (the served model name)")
        return self

    @classmethod
    def cpu_preset(cls, **overrides) -> RLConfig:
        """Small enough for a 135M model on 2 CPU cores."""
        base = dict(
            group_size=4,
            items_per_update=2,
            epochs=1,
            max_steps=4,
            max_new_tokens=96,
            max_episode_tokens=256,
            max_seq_len=1536,
            lr=1e-5,
            # Two optimizer steps per rollout batch (one item each), so the ratio and the clip act as in the
            # reference; the update's compute barely grows (one no-grad forward for the old log-probs of the
            # second half), while rollouts dominate a CPU update anyway.
            mini_batch_size=1,
            micro_batch_size=4,
            max_live_episodes=16,
        )
        base.update(overrides)
        return cls(**base)

    def ablation_name(self) -> str:
        if self.long_horizon and self.sparse_reward:
            return "plain_grpo"
        if self.long_horizon:
            return "no_short_horizon"
        if self.sparse_reward:
            return "no_key_step_reward"
        return "score_rl"
