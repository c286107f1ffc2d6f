"""The CPU LM head's log-probabilities and gradients against full logits, across token and vocabulary tiles."""

from __future__ import annotations

import pytest
import torch

from score_distill.training import tiled_logprob
from score_distill.training.tiled_logprob import TiledLogProb


def _reference(h, w, b, t):
    z = h @ w.t() + (b if b is not None else 0)
    return torch.log_softmax(z, dim=-1).gather(1, t[:, None])[:, 0], z.argmax(-1) == t


@pytest.mark.parametrize("bias", [False, True])
def test_matches_full_logits_with_a_wide_logit_range(monkeypatch, bias):
    monkeypatch.setattr(tiled_logprob, "TOKEN_TILE", 7)  # several token tiles, the last one partial
    g = torch.Generator().manual_seed(0)
    n, hdim, v = 23, 16, 50
    # Logits spread over hundreds: most columns sit far below their row's maximum (the CPU's slow range).
    h = (torch.randn(n, hdim, generator=g) * 12).requires_grad_()
    w = torch.randn(v, hdim, generator=g).requires_grad_()
    b = (torch.randn(v, generator=g) * 3).requires_grad_() if bias else None
    t = torch.randint(0, v, (n,), generator=g)
    t[0] = (h[0] @ w.t()).argmax()  # at least one top-1 hit
    coef = torch.rand(n, generator=g)  # a weighted sum: each token's gradient scaled differently

    logp, top1 = TiledLogProb.apply(h, w, b, t, 16)  # vocabulary tiles of 16: 4 tiles, the last partial
    ref, ref_top1 = _reference(h, w, b, t)
    assert torch.allclose(logp, ref, rtol=1e-5, atol=1e-4)
    assert torch.equal(top1, ref_top1) and top1.any()
    ins = [x for x in (h, w, b) if x is not None]
    grads = torch.autograd.grad((logp * coef).sum(), ins)
    ref_grads = torch.autograd.grad((ref * coef).sum(), ins)
    for got, want in zip(grads, ref_grads, strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * want.abs().max())


def test_top1_ties_go_to_the_first_column_across_tiles():
    h = torch.ones(1, 2)
    w = torch.ones(6, 2)  # every logit equal: argmax is column 0, in the first tile
    logp, top1 = TiledLogProb.apply(h, w, None, torch.tensor([0]), 4)
    assert top1.tolist() == [True]
    _, top1 = TiledLogProb.apply(h, w, None, torch.tensor([5]), 4)  # equal to the max, but not the first
    assert top1.tolist() == [False]
    assert torch.allclose(logp, torch.tensor([-torch.log(torch.tensor(6.0))]))
