"""Evaluation is seeded per (suite, sampling seed, task), common to all policies: resuming gives what one run
gives, and two copies of one model give the same episodes."""

from __future__ import annotations

from score_distill.agent.loop import AgentConfig
from score_distill.models.base import SamplingParams
from score_distill.models.hf import TransformersPolicy
from score_distill.models.tiny import build_tiny_model
from score_distill.stages.evaluate import evaluate_policy, policy_runner
from score_distill.tasks.registry import make_tasks
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import read_jsonl

TIMING = {"gen_seconds", "exec_seconds"}


def content(path):
    """A result file without wall-clock fields."""
    out = []
    for t in read_jsonl(path, Trajectory):
        d = t.model_dump(mode="json")
        for s in d["steps"]:
            for k in TIMING:
                s.pop(k)
        out.append(d)
    return out


def test_interrupted_then_resumed_evaluation_equals_an_uninterrupted_one(tmp_path, pool):
    model = build_tiny_model(tmp_path / "m", seed=0)
    suites = {"math": make_tasks("math", 3, 2, seed=0, split="eval"),
              "more": make_tasks("math", 2, 3, seed=5, split="eval")}
    agent = AgentConfig(max_steps=2, max_new_tokens=12, max_live_episodes=8)
    sampling = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)

    def runner(batch_size):
        pol = TransformersPolicy.from_pretrained(model, name="student", batch_size=batch_size)
        return policy_runner(pol, pool, agent, sampling, label=None)

    evaluate_policy(runner(8), suites, [0, 1], tmp_path / "whole")
    # Interrupted after the seed-0 files were written; resumed with a different batch size too.
    evaluate_policy(runner(8), suites, [0], tmp_path / "resumed")
    evaluate_policy(runner(3), suites, [0, 1], tmp_path / "resumed")
    for suite in suites:
        for seed in (0, 1):
            rel = f"{suite}/seed{seed}.jsonl"
            assert content(tmp_path / "whole" / rel) == content(tmp_path / "resumed" / rel), rel
    a, b = content(tmp_path / "whole" / "math/seed0.jsonl"), content(tmp_path / "whole" / "math/seed1.jsonl")
    assert [t["steps"] for t in a] != [t["steps"] for t in b]  # seeds are different samples


def test_policies_draw_from_common_seeds_unless_seeded_by_name(tmp_path, pool):
    """Common random numbers: the same weights under two names give the same episodes, so a paired comparison
    of two policies sees their weights, not their draws; with the name in the seed they are other samples."""
    model = build_tiny_model(tmp_path / "m", seed=0)
    suites = {"math": make_tasks("math", 4, 2, seed=0, split="eval")}
    agent = AgentConfig(max_steps=2, max_new_tokens=12, max_live_episodes=8)
    sampling = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)

    def steps(name, common):
        pol = TransformersPolicy.from_pretrained(model, name=name, batch_size=8)
        out = tmp_path / f"{name}-{common}"
        evaluate_policy(policy_runner(pol, pool, agent, sampling, label=None, common_seeds=common), suites, [0], out)
        return [t["steps"] for t in content(out / "math/seed0.jsonl")]

    assert steps("score_sft", True) == steps("score_rl", True)
    assert steps("score_sft", False) != steps("score_rl", False)
