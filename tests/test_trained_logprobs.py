"""Trained-token loss: packed (padding-free) and padded batches give the model's own loss and gradients."""

from __future__ import annotations

import pytest
import torch
from test_sft_trainer import _cfg, _records
from test_tokenize_tiny_model import tiny_model_dir
from transformers import AutoModelForCausalLM

from score_distill.training import trained_logprobs as tl
from score_distill.training.sft import train_sft
from score_distill.training.tiled_logprob import TiledLogProb

LENGTHS = (9, 17, 5, 12)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tlp") / "m", seed=0)


def _data():
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 300, (n,), generator=g).tolist() for n in LENGTHS]
    masks = [[0] * 3 + [1] * (n - 3) for n in LENGTHS]
    masks[1][8:11] = [0, 0, 0]  # an observation inside the trajectory: not trained
    return seqs, masks


def _labels(s, m):
    return [t if k and j > 0 else -100 for j, (t, k) in enumerate(zip(s, m))]


def _grads(model):
    g = torch.cat([p.grad.flatten() for p in model.parameters()]).clone()
    model.zero_grad(set_to_none=True)
    return g


def test_packed_padded_and_full_logits_give_the_same_loss_and_gradients(tiny):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    tl.install(model)
    seqs, masks = _data()
    n_trained = sum(sum(1 for j, k in enumerate(m) if k and j > 0) for m in masks)

    # Reference: the model's own loss from full logits, one unpadded sequence at a time, token-summed.
    ref = sum(model(input_ids=torch.tensor([s]), labels=torch.tensor([_labels(s, m)])).loss
              * sum(x != -100 for x in _labels(s, m)[1:]) for s, m in zip(seqs, masks))
    ref.backward()
    g_ref = _grads(model)

    packed = model(**tl.pack(seqs, masks), trained_logprobs=True)
    assert packed.log_probs.numel() == n_trained
    loss_packed = -packed.log_probs.sum()
    loss_packed.backward()
    g_packed = _grads(model)

    n = max(LENGTHS)
    ids = torch.tensor([s + [0] * (n - len(s)) for s in seqs])
    labels = torch.tensor([_labels(s, m) + [-100] * (n - len(s)) for s, m in zip(seqs, masks)])
    attn = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs])
    padded = model(input_ids=ids, labels=labels, attention_mask=attn, trained_logprobs=True)
    loss_padded = -padded.log_probs.sum()
    loss_padded.backward()
    g_padded = _grads(model)

    assert float(loss_packed.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert float(loss_padded.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    scale = g_ref.abs().max()
    assert (g_packed - g_ref).abs().max() < 1e-5 * scale + 1e-6
    assert (g_padded - g_ref).abs().max() < 1e-5 * scale + 1e-6


def test_lm_head_runs_on_trained_positions_only(tiny, monkeypatch):
    seen = []
    orig = TiledLogProb.apply  # the CPU head (TRL's ChunkedLogProbFunction on GPUs)

    def spy(hidden, *a):
        seen.append(hidden.shape[0])
        return orig(hidden, *a)

    monkeypatch.setattr(TiledLogProb, "apply", spy)
    model = tl.install(AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32))
    seqs, masks = _data()
    model(**tl.pack(seqs, masks), trained_logprobs=True)
    assert seen == [sum(sum(m[1:]) for m in masks)] and seen[0] < sum(LENGTHS) - len(LENGTHS)


def test_forward_without_the_flag_is_the_original(tiny):
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 9, 13, 21, 30]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        tl.install(model)
        tl.install(model)  # idempotent
        after = model(input_ids=ids).logits
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert torch.equal(before, after) and out.shape == (1, 8)


def test_sft_padding_free_trains_as_padded_batches(tiny, tmp_path):
    """The same run with padding-free rows and with padded batches: same losses, same final weights."""
    recs = _records(8)
    runs = {}
    for pf in (True, False):
        runs[pf] = train_sft(tiny, recs, _cfg(epochs=2, padding_free=pf, warmup_ratio=0.0), tmp_path / f"pf{pf}")
    assert runs[True].steps == runs[False].steps == 4
    assert runs[True].losses == pytest.approx(runs[False].losses, rel=1e-4)
    a = AutoModelForCausalLM.from_pretrained(runs[True].model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(runs[False].model_dir).state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_padded_sub_batches_group_similar_lengths():
    """The packed test above goes through several sub-batches (LENGTHS mix short and long rows); each keeps its
    padding within MAX_PADDING_RATIO, and every sequence is in exactly one."""
    segs, start = [], 0
    for n in LENGTHS:
        segs.append((start, start + n))
        start += n
    groups = tl._length_groups(segs)
    assert len(groups) > 1 and sorted(i for g in groups for i in g) == list(range(len(LENGTHS)))
    for g in groups:
        width = max(LENGTHS[i] for i in g)
        assert width * len(g) <= tl.MAX_PADDING_RATIO * sum(LENGTHS[i] for i in g)
    assert tl._length_groups([(0, 500), (500, 1000), (1000, 1100)]) == [[0, 1], [2]]
