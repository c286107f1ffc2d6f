"""Parked rows: a turn whose answer is not ready (its tools still run) leaves its row parked while the others
decode on. The episodes' turns are those of a caller that answers at once: same ids, contexts and
log-probabilities greedy, the same draws when sampling with per-row seeds (a parked row consumes none)."""

from __future__ import annotations

import pytest
import torch
from test_engine import policy, prompts, run_engine  # noqa: F401 (a fixture)

from score_distill.engine import LATER, Continue, Request
from score_distill.models.base import SamplingParams


def episodes(pol, params, hold, rows=3, **run_kw):
    """Three-turn episodes of three prompts. ``hold(tag, k)``: how many polls the answer to turn k (1-based) of
    episode ``tag`` is held back (0: answered at once). A blocking poll (every row parked) releases everything."""
    glue = pol.chat_glue()
    ids = prompts(pol)[:3]
    turns: dict[int, list] = {i: [] for i in range(len(ids))}
    held: dict[int, list] = {}
    polls = {"calls": 0, "blocking": 0}

    def limit(i, k):
        return 4 + 3 * i + 2 * k

    def answer(t):
        k = len(turns[t.tag])
        obs = f"Observation: {t.tag} {k}" + " more" * (t.tag + k)
        return None if k == 3 else Continue(glue.after_turn(t.ids, obs), limit(t.tag, k))

    def on_turns(done):
        out = []
        for t in done:
            turns[t.tag].append(t)
            n = hold(t.tag, len(turns[t.tag]))
            if n:
                held[t.tag] = [n, answer(t)]
                out.append(LATER)
            else:
                out.append(answer(t))
        return out

    def poll(block):
        polls["calls"] += 1
        polls["blocking"] += block
        ready = []
        for tag in list(held):
            held[tag][0] -= 1
            if block or held[tag][0] <= 0:
                ready.append((tag, held.pop(tag)[1]))
        return ready

    def gen(i):
        return torch.Generator().manual_seed(100 + i) if params.temperature > 0 else None

    reqs = [Request(p, limit(i, 0), gen(i), tag=i) for i, p in enumerate(ids)]
    _, engine = run_engine(pol, reqs, params, rows=rows, on_turns=on_turns, poll=poll, **run_kw)
    assert not held
    return turns, engine, polls


@pytest.mark.parametrize("mixed,draft,temperature", [(True, 0, 0.0), (False, 0, 0.0), (True, 3, 0.0),
                                                      (True, 0, 1.0), (False, 3, 1.0)])
def test_parked_rows_give_the_turns_of_a_caller_that_answers_at_once(policy, mixed, draft, temperature):  # noqa: F811
    params = SamplingParams(temperature=temperature, top_k=0, top_p=1.0, repetition_penalty=1.3, max_new_tokens=64)
    now, e0, _ = episodes(policy, params, lambda tag, k: 0, mixed_steps=mixed, draft=draft)
    # Episode 0 waits 6 polls after each turn, episode 1 two polls after its first: the others decode meanwhile.
    later, e1, polls = episodes(policy, params, lambda tag, k: {0: 6, 1: 2 * (k == 1)}.get(tag, 0),
                                mixed_steps=mixed, draft=draft)
    assert e0.stats["parked_turns"] == 0 and e1.stats["parked_turns"] == 3 + 1
    assert e1.stats["parked_row_steps"] > 0  # parked rows rode along in the other rows' steps
    assert polls["calls"] > polls["blocking"]
    for i in now:
        assert [t.ids for t in later[i]] == [t.ids for t in now[i]], i
        for a, b in zip(later[i], now[i]):
            assert a.context == b.context
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_every_row_parked_waits_in_a_blocking_poll(policy):  # noqa: F811
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=64)
    now, _, _ = episodes(policy, params, lambda tag, k: 0)
    later, engine, polls = episodes(policy, params, lambda tag, k: 1000, rows=1)
    assert polls["blocking"] == engine.stats["parked_turns"] == 9
    for i in now:
        assert [t.ids for t in later[i]] == [t.ids for t in now[i]], i


def test_answering_later_without_a_poll_is_an_error(policy):  # noqa: F811
    params = SamplingParams(temperature=0.0, max_new_tokens=3)
    with pytest.raises(RuntimeError, match="no poll"):
        run_engine(policy, [Request(prompts(policy)[0], 3, tag=0)], params, rows=1,
                   on_turns=lambda turns: [LATER] * len(turns))
