"""Speculative decoding by prompt lookup in the rollout engine: the same tokens as plain decoding when greedy
(hence as ``generate``), the same distribution when sampling, per-row seeds still independent of the batch."""

from __future__ import annotations

import pytest
import torch
from test_engine import QUESTIONS, policy, prompts, reference, run_engine, three_turns  # noqa: F401 (a fixture)

from score_distill.agent import format as fmt
from score_distill.engine import Request, RolloutEngine
from score_distill.engine.sampling import Sampler
from score_distill.models.base import SamplingParams


@pytest.mark.parametrize("penalty,shared", [(1.0, True), (1.3, True), (1.0, False)])
def test_greedy_with_drafts_equals_generate(policy, penalty, shared):  # noqa: F811
    params = SamplingParams(temperature=0.0, repetition_penalty=penalty, max_new_tokens=40)
    ids = prompts(policy)
    got, engine = run_engine(policy, [Request(p, 40, tag=i) for i, p in enumerate(ids)], params, rows=3, draft=4,
                             shared_attention=shared)
    assert engine.stats["verify_steps"] > 0
    if penalty == 1.0:  # this random model repeats itself: drafts are kept and steps saved (the penalty breaks loops)
        assert engine.stats["accepted_tokens"] > 0
        assert engine.stats["decode_steps"] < max(len(t.ids) for t in got.values())
    for i, p in enumerate(ids):
        assert got[i].ids == reference(policy, p, params), i
        assert len(got[i].logprobs) == len(got[i].ids)
    plain, _ = run_engine(policy, [Request(p, 40, tag=i) for i, p in enumerate(ids)], params, rows=3, draft=0,
                          shared_attention=shared)
    for i in range(len(ids)):
        assert got[i].logprobs == pytest.approx(plain[i].logprobs, abs=1e-4)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_drafts_across_turns_stops_and_limits(policy, attention):  # noqa: F811
    """Multi-turn episodes (appended observations, rows joining and leaving), stop strings and turn limits that
    cut drafts short: every turn equals generate on its whole context."""
    own = policy.model.config._attn_implementation
    policy.model.config._attn_implementation = attention
    ids = prompts(policy)
    stop = fmt.STOP_STRINGS
    try:
        turns, engine = three_turns(policy, ids, lambda i, k: 5 + 7 * k if k else 9 + 3 * i,
                                    lambda i, k: f"Observation: {i} {k}", draft=3, stop=stop)
        assert engine.stats["accepted_tokens"] > 0
        for i in range(len(ids)):
            for t in turns[i]:
                want = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=len(t.ids))
                ref = reference(policy, t.context, want, stop=stop)
                assert t.ids == ref, (i, t.finish)
    finally:
        policy.model.config._attn_implementation = own


@pytest.mark.parametrize("top_k", [0, 20])
def test_a_drafting_episode_samples_the_same_alone_or_in_a_batch(policy, top_k):  # noqa: F811
    params = SamplingParams(temperature=1.0, top_k=top_k, top_p=0.95, repetition_penalty=1.1, max_new_tokens=24)
    ids = prompts(policy)
    first = Request(ids[2], 24, torch.Generator().manual_seed(7), tag="x")
    alone, _ = run_engine(policy, [first], params, rows=1, draft=4)
    reqs = [Request(p, 24, torch.Generator().manual_seed(i), tag=i) for i, p in enumerate(ids)]
    reqs.insert(1, Request(ids[2], 24, torch.Generator().manual_seed(7), tag="x"))
    together, engine = run_engine(policy, reqs, params, rows=5, draft=4)
    assert alone["x"].ids == together["x"].ids
    assert engine.stats["verify_steps"] > 0


@pytest.mark.parametrize("top_k,draft", [(0, 3), (20, 3), (20, 45)])
def test_drafted_sampling_keeps_the_distribution(top_k, draft):
    """Accept-or-resample against a fixed draft gives each token exactly its processed probability: the draft's
    own (3: likely), or none at all for a draft outside the top k (45)."""
    vocab, n = 50, 40000
    params = SamplingParams(temperature=0.8, top_k=top_k, top_p=0.9, repetition_penalty=1.0)
    logits = torch.linspace(2.0, -3.0, vocab)[torch.randperm(vocab, generator=torch.Generator().manual_seed(1))]
    draft = int(logits.argsort(descending=True)[draft])
    sampler = Sampler(params, n, vocab, torch.device("cpu"))
    batch = logits.repeat(n, 1)
    tokens, _, kept = sampler.choose_drafted(batch, list(range(n)), [None] * n, [draft] * n)
    plain, _ = sampler.choose(batch, list(range(n)), [None] * n)
    got = torch.bincount(torch.tensor(tokens), minlength=vocab).float() / n
    want = torch.bincount(torch.tensor(plain), minlength=vocab).float() / n
    assert (got - want).abs().max() < 0.015
    assert abs(sum(kept) / n - float(want[draft])) < 0.015
    assert sum(kept) == sum(t == draft for t in tokens)  # a rejected draft is never redrawn


def test_draft_settings_are_checked(policy):  # noqa: F811
    with pytest.raises(ValueError, match="draft_tokens"):
        RolloutEngine(policy.model, policy.tokenizer, SamplingParams(), max_rows=1, eos_ids=[0], draft_tokens=-1)
    assert QUESTIONS

