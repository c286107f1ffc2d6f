"""The rollout engine against plain ``model.generate``: same tokens greedy, same draws for the same seed
(without top-k; with it, the same distribution), across continuous batching, shared-prefix forks, mixed steps
and multi-turn continuation."""

from __future__ import annotations

import pytest
import torch

from score_distill.agent import format as fmt
from score_distill.engine import Continue, Request, RolloutEngine
from score_distill.models.base import SamplingParams
from score_distill.models.hf import TransformersPolicy, _end_of_turn_ids
from score_distill.models.tiny import build_tiny_model

QUESTIONS = [
    "hi",
    "What is 12 * 7? Compute it with code.",
    "Alice has 5 apples and buys 3 more each week for 4 weeks. How many apples now?",
    "Bob has 999 marbles and gives away 17 each day. " * 3,
]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return TransformersPolicy.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", seed=0))


def prompts(policy, system=True):
    out = []
    for q in QUESTIONS:
        head = [{"role": "system", "content": fmt.system_prompt()}] if system else []
        msgs = head + [{"role": "user", "content": q}]
        out.append(policy.chat_glue().prompt(msgs))
    return out


def reference(policy, ids, params, seed=None, stop=None):
    """model.generate on one prompt alone (batch 1), as the ground truth."""
    tok, model = policy.tokenizer, policy.model
    kw = dict(max_new_tokens=params.max_new_tokens, repetition_penalty=params.repetition_penalty,
              eos_token_id=_end_of_turn_ids(tok, model), pad_token_id=tok.pad_token_id)
    if params.temperature > 0:
        kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if stop:
        kw.update(stop_strings=stop, tokenizer=tok)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), **kw)
    return out[0, len(ids):].tolist()


def run_engine(policy, reqs, params, rows, stop=None, on_turns=None, shared_attention=True, mixed_steps=True,
               draft=0, poll=None):
    engine = RolloutEngine(policy.model, policy.tokenizer, params, max_rows=rows,
                           eos_ids=_end_of_turn_ids(policy.tokenizer, policy.model), stop=stop,
                           shared_attention=shared_attention, mixed_steps=mixed_steps, draft_tokens=draft)
    got = {}

    def default(turns):
        for t in turns:
            got[t.tag] = t
        return [None] * len(turns)

    engine.run(reqs, on_turns or default, poll=poll)
    return got, engine


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_equals_generate_with_continuous_batching(policy, penalty):
    params = SamplingParams(temperature=0.0, repetition_penalty=penalty, max_new_tokens=24)
    ids = prompts(policy)
    got, engine = run_engine(policy, [Request(p, 24, tag=i) for i, p in enumerate(ids)], params, rows=2)
    for i, p in enumerate(ids):
        assert got[i].ids == reference(policy, p, params), i
        assert got[i].context == p and len(got[i].logprobs) == len(got[i].ids)
    assert engine.stats["forked_tokens"] > 0  # the shared system prompt was copied, not recomputed
    assert engine.stats["cascaded_steps"] > 0  # ...and read once per decode step


def test_shared_prefix_attention_equals_plain_attention(policy):
    """Two families (two system prompts), a lone row and multi-turn appends: the cascaded decode gives the
    tokens and log-probabilities of plain attention, and reads each family's prefix once per step."""
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=10)
    glue = policy.chat_glue()
    other = "You answer questions about geography. Think step by step, then answer in one word. " * 2
    reqs = []
    for i, q in enumerate(QUESTIONS):
        reqs.append((f"a{i}", prompts(policy)[i]))
        reqs.append((f"b{i}", glue.prompt([{"role": "system", "content": other}, {"role": "user", "content": q}])))
    reqs.append(("lone", glue.prompt([{"role": "user", "content": QUESTIONS[2]}])))

    def go(shared):
        seen: dict[str, list] = {}

        def on_turns(done):
            out = []
            for t in done:
                seen.setdefault(t.tag, []).append(t)
                more = len(seen[t.tag]) < 2
                out.append(Continue(glue.after_turn(t.ids, f"obs {t.tag}"), 10) if more else None)
            return out

        _, engine = run_engine(policy, [Request(p, 10, tag=tag) for tag, p in reqs], params, rows=len(reqs),
                               on_turns=on_turns, shared_attention=shared)
        return seen, engine

    plain, e0 = go(False)
    shared, e1 = go(True)
    assert e0.stats["cascaded_steps"] == 0 and e1.stats["cascaded_steps"] > 0
    assert e1.stats["shared_prefix_reads_saved"] > 0
    assert len(e1.families) >= 2
    for tag, _ in reqs:
        assert [t.ids for t in shared[tag]] == [t.ids for t in plain[tag]], tag
        for a, b in zip(shared[tag], plain[tag]):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4), tag


def test_stop_strings_stop_where_generate_stops(policy):
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=40)
    ids = prompts(policy, system=False)
    # Stops that this random model does write: two-character pieces of its own greedy outputs.
    refs = [reference(policy, p, params) for p in ids]
    text = policy.tokenizer.decode(refs[1], skip_special_tokens=True)
    stop = [text[5:7], text[12:14]]
    got, _ = run_engine(policy, [Request(p, 40, tag=i) for i, p in enumerate(ids)], params, rows=4, stop=stop)
    hit = 0
    for i, p in enumerate(ids):
        want = reference(policy, p, params, stop=stop)
        assert got[i].ids == want, i
        hit += got[i].finish == "stop"
    assert hit >= 1


def test_sampling_draws_what_generate_draws_for_the_same_seed(policy):
    """Without top-k every vocabulary entry may be drawn, and a seeded row draws exactly what generate draws."""
    params = SamplingParams(temperature=0.9, top_k=0, top_p=0.9, repetition_penalty=1.1, max_new_tokens=20)
    ids = prompts(policy)
    reqs = [Request(p, 20, generator=torch.Generator().manual_seed(100 + i), tag=i) for i, p in enumerate(ids)]
    got, _ = run_engine(policy, reqs, params, rows=3)
    for i, p in enumerate(ids):
        assert got[i].ids == reference(policy, p, params, seed=100 + i), i


@pytest.mark.parametrize("top_k", [0, 20])
def test_an_episode_samples_the_same_alone_or_in_a_batch(policy, top_k):
    params = SamplingParams(temperature=1.0, top_k=top_k, top_p=1.0, repetition_penalty=1.0, max_new_tokens=16)
    ids = prompts(policy)
    alone, _ = run_engine(policy, [Request(ids[2], 16, torch.Generator().manual_seed(7), tag="x")], params, rows=1)
    reqs = [Request(p, 16, torch.Generator().manual_seed(i), tag=i) for i, p in enumerate(ids)]
    reqs.insert(1, Request(ids[2], 16, torch.Generator().manual_seed(7), tag="x"))
    together, _ = run_engine(policy, reqs, params, rows=5)
    assert alone["x"].ids == together["x"].ids


def test_top_k_draws_follow_generates_distribution():
    """With top-k a row draws among its k candidates: the frequencies over many seeded rows match the
    distribution generate's own warpers (temperature, top-k, top-p, in generate's order) give."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from score_distill.engine.sampling import Sampler

    params = SamplingParams(temperature=0.7, top_k=6, top_p=0.9, repetition_penalty=1.0)
    vocab, n = 40, 20000
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(3)) * 2
    warped = LogitsProcessorList([TemperatureLogitsWarper(0.7), TopKLogitsWarper(6), TopPLogitsWarper(0.9)])(
        None, logits[None].clone())
    want = torch.softmax(warped, -1)[0]
    sampler = Sampler(params, n, vocab, torch.device("cpu"))
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    tokens, logprobs = sampler.choose(logits.expand(n, vocab).clone(), slice(0, n), gens)
    freq = torch.bincount(torch.tensor(tokens), minlength=vocab).float() / n
    assert set(torch.tensor(tokens).unique().tolist()) <= set(torch.nonzero(want).view(-1).tolist())
    assert (freq - want).abs().max() < 0.015
    # the log-probabilities are the unprocessed model's, as a trainer recomputes them
    assert logprobs[0] == pytest.approx(torch.log_softmax(logits, -1)[tokens[0]].item(), abs=1e-5)
    again, _ = Sampler(params, n, vocab, torch.device("cpu")).choose(
        logits.expand(n, vocab).clone(), slice(0, n), [torch.Generator().manual_seed(i) for i in range(n)])
    assert again == tokens  # a row's draw depends on its own seed only


@pytest.mark.parametrize("temperature", [0.0, 0.6])
def test_processed_candidates_equal_generates_processors(temperature):
    """The sampler's candidates and their probabilities, with the penalty, temperature, top-k and top-p, equal
    what transformers' processors give over the whole vocabulary; greedy picks their argmax; the raw logits
    come back untouched and the log-probability is the raw model's."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    from score_distill.engine.sampling import Sampler

    vocab, n = 300, 6
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(n, vocab, generator=g) * 3
    contexts = [torch.randint(0, vocab, (40 + 9 * i,), generator=g).tolist() for i in range(n)]
    # a seen token is the best raw logit in some rows, so the penalty changes the top candidates
    for i in range(0, n, 2):
        logits[i, contexts[i][0]] = logits[i].max() + 0.05
    params = SamplingParams(temperature=temperature, top_k=8, top_p=0.9, repetition_penalty=1.3)
    sampler = Sampler(params, n + 2, vocab, torch.device("cpu"))
    rows = [3, 5, 0, 7, 1, 2]  # the rows' slots, not in order
    for slot, ids in zip(rows, contexts):
        sampler.reset_row(slot, ids)
    procs = [RepetitionPenaltyLogitsProcessor(1.3)]
    if temperature:
        procs += [TemperatureLogitsWarper(temperature), TopKLogitsWarper(8), TopPLogitsWarper(0.9)]
    want = torch.cat([LogitsProcessorList(procs)(torch.tensor([ids]), logits[i : i + 1].clone())
                      for i, ids in enumerate(contexts)])
    raw = logits.clone()
    lse, scores, idx, _ = sampler._processed(logits, rows)
    assert torch.equal(logits, raw)
    if temperature:
        probs = torch.zeros(n, vocab).scatter_(1, idx, torch.softmax(scores, -1))
        torch.testing.assert_close(probs, torch.softmax(want, -1), rtol=1e-5, atol=1e-6)
    else:
        assert idx[:, 0].tolist() == want.argmax(-1).tolist()
    tokens, logprobs = sampler.choose(logits, rows, [torch.Generator().manual_seed(i) for i in range(n)])
    assert torch.equal(logits, raw)
    ref = torch.log_softmax(raw, -1).gather(1, torch.tensor(tokens)[:, None])[:, 0]
    assert logprobs == pytest.approx(ref.tolist(), abs=1e-5)
    assert all(sampler.seen[s, t] for s, t in zip(rows, tokens))


def test_the_callers_turn_time_is_counted_apart(policy):
    """A caller that takes its time over the ended turns (a slow tool) shows as ``turns_s``, not as forwards."""
    import time

    params = SamplingParams(temperature=0.0, max_new_tokens=4)
    calls = []

    def slow(turns):
        calls.append(len(turns))
        time.sleep(0.3)
        return [None] * len(turns)

    _, engine = run_engine(policy, [Request(p, 4, tag=i) for i, p in enumerate(prompts(policy)[:2])], params,
                           rows=2, on_turns=slow)
    assert calls and engine.stats["turns_s"] >= 0.3 * len(calls)
    assert engine.stats["decode_s"] + engine.stats["mixed_s"] + engine.stats["prefill_s"] < engine.stats["turns_s"]


def test_identical_prompts_prefill_once_and_fork(policy):
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=8)
    p = prompts(policy)[3]
    got, engine = run_engine(policy, [Request(p, 8, tag=j) for j in range(4)], params, rows=4)
    assert engine.stats["prefill_tokens"] == len(p) + 3  # one full prefill, then one token per fork
    assert engine.stats["forked_tokens"] == 3 * (len(p) - 1)
    assert all(got[j].ids == got[0].ids for j in range(4))


@pytest.mark.parametrize("mixed,attention", [(True, "sdpa"), (False, "sdpa"), (True, "eager")])
def test_continued_turns_equal_generate_on_the_whole_context(policy, mixed, attention):
    """A second turn decoded from the kept cache equals generate on (prompt + turn 1 + appended ids), whether
    the appended ids ride along with the other rows' decode step (mixed) or get a forward of their own."""
    own = policy.model.config._attn_implementation
    policy.model.config._attn_implementation = attention
    try:
        _continued_turns(policy, mixed)
    finally:
        policy.model.config._attn_implementation = own


def _continued_turns(policy, mixed):
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=12)
    ids = prompts(policy)[:3]
    glue = policy.chat_glue()

    def obs(i, k):  # observations of different lengths: rows prefilled together are padded
        return f"Observation: {i} {k}" + " more" * (3 * i + k)

    turns, engine = three_turns(policy, ids, lambda i, k: 12, obs, rows=2, mixed_steps=mixed)
    if mixed:  # observations and the joining prompt were fed beside a decoding row, in its step
        assert engine.stats["mixed_rows_fed"] >= 4
    else:
        assert engine.stats["mixed_steps"] == 0
        assert engine.stats["prefill_rows"] > engine.stats["prefill_forwards"]  # some rows were prefilled together
    for i in range(len(ids)):
        ts = turns[i]
        assert len(ts) == 3
        for k, t in enumerate(ts):
            if k:
                prev = ts[k - 1]
                assert t.context == prev.context + prev.ids + glue.after_turn(prev.ids, obs(i, k))
            assert t.ids == reference(policy, t.context, params), (i, k)


def three_turns(policy, ids, limit, obs, rows=3, **run_kw):
    """Greedy three-turn episodes: turn k (0-based) of episode i is limited to ``limit(i, k)`` ids and followed by the
    observation ``obs(i, k + 1)``. Returns every episode's turns and the engine."""
    glue = policy.chat_glue()
    turns: dict[int, list] = {i: [] for i in range(len(ids))}

    def on_turns(done):
        out = []
        for t in done:
            turns[t.tag].append(t)
            k = len(turns[t.tag])
            out.append(None if k == 3 else Continue(glue.after_turn(t.ids, obs(t.tag, k)), limit(t.tag, k)))
        return out

    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=64)
    _, engine = run_engine(policy, [Request(p, limit(i, 0), tag=i) for i, p in enumerate(ids)], params, rows=rows,
                           on_turns=on_turns, **run_kw)
    return turns, engine


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_mixed_steps_feed_rows_beside_decoding_rows(policy, attention):
    """Turns of different lengths, so observations and joining prompts arrive while other rows decode: they are
    fed in those rows' steps, and every turn equals generate on its whole context and the turn the engine gives
    when each feed has a forward of its own (log-probabilities included)."""
    ids = prompts(policy)

    def limit(i, k):
        return 3 + 4 * i + 2 * k

    def go(mixed):
        return three_turns(policy, ids, limit, lambda i, k: f"Observation: {i} {k}" + " x" * k, mixed_steps=mixed)

    own = policy.model.config._attn_implementation
    policy.model.config._attn_implementation = attention
    try:
        fused, e1 = go(True)
        apart, e0 = go(False)
        assert e1.stats["mixed_rows_fed"] >= 6 and e0.stats["mixed_steps"] == 0
        assert e1.stats["prefill_forwards"] < e0.stats["prefill_forwards"]
        for i in range(len(ids)):
            assert [t.ids for t in fused[i]] == [t.ids for t in apart[i]], i
            for k, (a, b) in enumerate(zip(fused[i], apart[i])):
                assert a.context == b.context
                assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4), (i, k)
                want = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=limit(i, k))
                assert a.ids == reference(policy, a.context, want), (i, k)
    finally:
        policy.model.config._attn_implementation = own


def test_the_same_model_object_is_used(policy):
    """No weight sync: an in-place update is seen by the next run."""
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=6)
    p = prompts(policy)[1]
    before, _ = run_engine(policy, [Request(p, 6, tag=0)], params, rows=1)
    head = policy.model.get_output_embeddings().weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head[before[0].ids[0]] -= 100.0
        after, _ = run_engine(policy, [Request(p, 6, tag=0)], params, rows=1)
        assert after[0].ids[0] != before[0].ids[0]
    finally:
        with torch.no_grad():
            head.copy_(saved)


@pytest.mark.smollm
@pytest.mark.parametrize("draft", [0, 4])  # 4: speculative decoding by prompt lookup (tests/test_engine_drafts.py)
def test_greedy_equals_generate_on_smollm2(draft):
    pol = TransformersPolicy("smollm2-135m")
    params = SamplingParams(temperature=0.0, repetition_penalty=1.1, max_new_tokens=48)
    ids = [pol.chat_glue().prompt([{"role": "system", "content": fmt.system_prompt()},
                                   {"role": "user", "content": q}]) for q in QUESTIONS[1:3]]
    got, engine = run_engine(pol, [Request(p, 48, tag=i) for i, p in enumerate(ids)], params, rows=2,
                             stop=fmt.STOP_STRINGS, draft=draft)
    assert (engine.stats["verify_steps"] > 0) == (draft > 0)
    for i, p in enumerate(ids):
        assert got[i].ids == reference(pol, p, params, stop=fmt.STOP_STRINGS), i


def test_a_full_context_ends_the_turn_instead_of_overrunning(policy):
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=8)
    n = policy.model.config.max_position_embeddings
    got, _ = run_engine(policy, [Request([5] * n, 8, tag="full"), Request([5] * (n - 2), 8, tag="near")], params,
                        rows=2)
    assert got["full"].finish == "context" and got["full"].ids == []
    assert got["near"].finish in ("length", "eos") and len(got["near"].ids) <= 2


def _benchmark(benchmark_script, monkeypatch, tmp_path, name: str, *args: str) -> dict:
    """Run ``benchmarks/<name>.py`` with ``args`` and ``--json``; its record."""
    import json
    import sys

    out = tmp_path / f"{name}.json"
    monkeypatch.setattr(sys, "argv", [name, *args, "--json", str(out)])
    benchmark_script(name).main()
    return json.loads(out.read_text())


def test_rollout_benchmark_writes_its_figures(tmp_path, monkeypatch, benchmark_script):
    res = _benchmark(benchmark_script, monkeypatch, tmp_path, "rollout_throughput", "--model", "tiny", "--batch",
                     "3", "--episodes", "5", "--max-new-tokens", "8", "--max-steps", "2")
    for key in ("raw_tok_s", "agent_tok_s", "reencode_tok_s", "matmul_gflops", "live_batch", "peak_rss_mb"):
        assert res[key] > 0, key
    assert res["live_batch"] == 3 and res["episodes"] == 5  # more episodes than rows: they queue and join
    assert res["agent_tokens"] > 0 and res["engine"]["decode_steps"] > 0


def test_decode_step_benchmark_splits_the_step(tmp_path, monkeypatch, benchmark_script):
    res = _benchmark(benchmark_script, monkeypatch, tmp_path, "decode_step", "--model", "tiny", "--rows", "2",
                     "--context", "16", "--steps", "1")
    assert res["rows"] == 2 and res["step_s"] > 0 and res["matmul_s"] > 0 and res["attention_s"] > 0
    assert res["mlp_product"]["gflops"] > 0


def test_sampler_benchmark_times_a_step(tmp_path, monkeypatch, benchmark_script):
    res = _benchmark(benchmark_script, monkeypatch, tmp_path, "sampler_step", "--rows", "3", "--vocab", "500",
                     "--seen", "20", "--steps", "4")
    assert res["rows"] == 3 and res["vocab"] == 500 and 0 < res["median_ms"] <= res["p90_ms"]
    assert res["params"]["top_k"] == 20
