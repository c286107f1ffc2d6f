"""GRPO math, token-level masks, and a real learning signal on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from accelerate import Accelerator
from test_tokenize_tiny_model import tiny_model_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from score_distill.rl.grpo import GRPOUpdater, TrainSample, group_advantages, grpo_token_terms
from score_distill.rl.items import RLItem
from score_distill.rl.rollout import Rollout, encode_rollout
from score_distill.trajectory import Step, Task, Trajectory


def test_advantages_zero_mean_per_group_and_zero_when_equal():
    rewards = [1.0, 0.0, 0.5, 0.1, 0.2, 0.2, 0.2, 0.2, 1.0, 0.0]
    groups = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    adv = group_advantages(rewards, groups, eps=1e-4)
    for g in (0, 1, 2):
        idx = [i for i, x in enumerate(groups) if x == g]
        assert abs(float(adv[idx].sum())) < 1e-5
    assert torch.all(adv[4:8] == 0)
    r = torch.tensor(rewards[:4])
    expected = (r - r.mean()) / (r.std() + 1e-4)
    assert torch.allclose(adv[:4], expected, atol=1e-6)
    assert adv[8] > 0 > adv[9]


def test_clipping_and_kl_terms():
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    old = torch.log(torch.tensor([[0.25, 0.5]]))  # ratio 2 on token 0, 1 on token 1
    mask = torch.tensor([[1.0, 1.0]])
    loss, st = grpo_token_terms(logp, old, torch.tensor([1.0]), mask, clip_low=0.2, clip_high=0.2)
    assert math.isclose(float(loss), -(1.2 + 1.0), rel_tol=1e-6)  # ratio clipped to 1.2 for A>0
    assert float(st["clipped"]) == 1.0
    loss, _ = grpo_token_terms(logp, old, torch.tensor([-1.0]), mask, clip_low=0.2, clip_high=0.2)
    assert math.isclose(float(loss), 2.0 + 1.0, rel_tol=1e-6)  # A<0: the unclipped (worse) term counts
    ref = torch.log(torch.tensor([[0.25, 0.5]]))
    _, st = grpo_token_terms(logp, logp, torch.tensor([0.0]), mask, clip_low=0.2, clip_high=0.2, ref_logp=ref,
                             kl_coef=1.0)
    d = math.log(0.5)
    assert math.isclose(float(st["kl_sum"]), math.exp(d) - d - 1, rel_tol=1e-5)
    # Masked tokens contribute nothing.
    loss0, _ = grpo_token_terms(logp, old, torch.tensor([1.0]), torch.zeros_like(mask), clip_low=0.2, clip_high=0.2)
    assert float(loss0) == 0.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tiny_model_dir(tmp_path_factory.mktemp("rl_tiny") / "m", seed=0)
    return d, AutoTokenizer.from_pretrained(d)


def _rollout() -> Rollout:
    task = Task(id="t", question="What is 17 + 25?", answer="42")
    prefix = [Step(kind="plan", thought="PREFIXPLAN add them"),
              Step(thought="PREFIXACT", code="x = 17 + 25\nprint(x)", observation="PREFIXOBS 42")]
    new = [Step(thought="NEWONE", code="y = x\nprint(y)", observation="SECRETOBS 42"),
           Step(thought="NEWTWO", code="final_answer_print(y)", observation="42", final_answer="42",
                raw="<thought>NEWTWO</thought>\n<code>\nfinal_answer_print(y)\n</code>\nextra")]
    t = Trajectory(task=task, steps=prefix + new, final_answer="42", outcome="correct")
    item = RLItem(id="i", kind="key_step", task=task, prefix=prefix, chosen=new[0], rejected=new[0], step_index=2)
    return Rollout(item=item, group=0, trajectory=t, n_prefix=2)


def _runs(ids, mask):
    runs, cur = [], None
    for t, m in zip(ids, mask):
        if m:
            cur = (cur or []) + [t]
        elif cur is not None:
            runs.append(cur)
            cur = None
    if cur:
        runs.append(cur)
    return runs


def test_loss_mask_covers_only_new_assistant_turns(tiny):
    _, tok = tiny
    enc = encode_rollout(tok, _rollout(), max_seq_len=4096)
    ids, mask = enc["input_ids"], enc["loss_mask"]
    assert len(ids) == len(mask)
    runs = [tok.decode(r) for r in _runs(ids, mask)]
    assert len(runs) == 2
    assert "NEWONE" in runs[0] and runs[0].endswith("<|im_end|>")
    assert runs[1].startswith("<thought>NEWTWO") and "extra" in runs[1]  # the raw (sampled) text is trained
    untrained = tok.decode([t for t, m in zip(ids, mask) if not m])
    for s in ("PREFIXPLAN", "PREFIXACT", "PREFIXOBS", "SECRETOBS", "What is 17"):
        assert s in untrained and all(s not in r for r in runs)
    # The first trained token comes after the prompt (system, task, prefix, generation prompt).
    assert mask.index(1) >= enc["prompt_length"]


def test_observation_tokens_get_no_gradient(tiny):
    """Changing the logits at masked positions cannot change the loss: check via the gradient wrt logits."""
    d, tok = tiny
    model = AutoModelForCausalLM.from_pretrained(d)
    enc = encode_rollout(tok, _rollout(), max_seq_len=4096)
    ids = torch.tensor([enc["input_ids"]])
    mask = torch.tensor([enc["loss_mask"]], dtype=torch.float32)[:, 1:]
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=emb).logits[:, :-1]
    logits.retain_grad()
    logp = -torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    loss, _ = grpo_token_terms(logp, logp.detach(), torch.tensor([1.0]), mask, clip_low=0.2, clip_high=0.2)
    loss.backward()
    g = logits.grad.abs().sum(-1)[0]
    assert torch.all(g[mask[0] == 0] == 0) and torch.all(g[mask[0] == 1] > 0)


def test_gradient_accumulation_equals_full_batch(tiny):
    d, _ = tiny
    torch.manual_seed(0)
    samples = [TrainSample(list(torch.randint(3, 200, (n,)).tolist()), [0] * 3 + [1] * (n - 3), a)
               for n, a in [(7, 1.0), (12, -0.5), (9, 0.3), (15, -0.8)]]
    grads = []
    for mb in (4, 1):
        model = AutoModelForCausalLM.from_pretrained(d)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        acc = Accelerator(cpu=True)
        model, opt = acc.prepare(model, opt)
        captured = {}
        orig = opt.step

        def step(*a, _m=model, _c=captured, _o=orig, **k):
            _c["g"] = torch.cat([p.grad.flatten() for p in _m.parameters() if p.grad is not None]).clone()
            return _o(*a, **k)

        opt.step = step
        GRPOUpdater(model, opt, acc, micro_batch_size=mb, max_grad_norm=None, pad_id=0).update(samples)
        grads.append(captured["g"])
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


@pytest.mark.slow
def test_grpo_learns_a_trivial_preference(tiny):
    """Reward = share of even token ids among 8 sampled tokens. Random init gives ~0.5; GRPO must raise it."""
    d, tok = tiny
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(d)
    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model, opt = acc.prepare(model, opt)
    upd = GRPOUpdater(model, opt, acc, micro_batch_size=32, pad_id=tok.pad_token_id)
    texts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
             for q in ("What is 17 + 25?", "Add the two numbers", "submit the sum", "compute x")]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    G, means = 8, []
    for _ in range(30):
        samples, rewards, groups = [], [], []
        model.eval()
        for gi, p in enumerate(prompts):
            with torch.no_grad():
                out = model.generate(torch.tensor([p] * G), do_sample=True, max_new_tokens=8, min_new_tokens=8,
                                     top_k=0, top_p=1.0, temperature=1.0, pad_token_id=tok.pad_token_id)
            for row in out.tolist():
                gen = row[len(p):]
                rewards.append(sum(1 for t in gen if t % 2 == 0) / len(gen))
                groups.append(gi)
                samples.append(TrainSample(row, [0] * len(p) + [1] * len(gen), 0.0))
        adv = group_advantages(rewards, groups)
        for s, a in zip(samples, adv.tolist()):
            s.advantage = a
        upd.update(samples)
        means.append(sum(rewards) / len(rewards))
    first, last = sum(means[:5]) / 5, sum(means[-5:]) / 5
    assert last > first + 0.2, (first, last, means)


def _two_groups(tok_range=(3, 200)):
    torch.manual_seed(1)
    out = []
    for g in range(2):
        for n, a in [(14, 1.0), (11, -1.0)]:
            out.append(TrainSample(torch.randint(*tok_range, (n,)).tolist(), [0] * 4 + [1] * (n - 4), a, group=g))
    return out


def _updater(d, lr, **kw):
    model = AutoModelForCausalLM.from_pretrained(d)
    acc = Accelerator(cpu=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model, opt = acc.prepare(model, opt)
    return GRPOUpdater(model, opt, acc, max_grad_norm=None, pad_id=0, **kw)


def test_clipping_acts_from_the_second_mini_batch_step(tiny):
    """Old log-probs are taken once: after the first step (large lr) the second mini-batch sees ratio != 1."""
    d, _ = tiny
    st = _updater(d, lr=5.0, mini_batch_size=1).update(_two_groups(), n_items=2)
    assert st["mini_batches"] == 2 and st["optimizer_steps"] == 2
    assert st["clip_frac_steps"][0] == 0.0  # the first step starts from the sampling policy
    assert st["clip_frac_steps"][1] > 0.0, st
    assert st["clip_frac"] > 0 and st["ratio_mean"] != 1.0


def test_one_mini_batch_never_clips(tiny):
    d, _ = tiny
    for mini in (None, 2):  # the whole batch in one step
        st = _updater(d, lr=5.0, mini_batch_size=mini).update(_two_groups(), n_items=2)
        assert st["optimizer_steps"] == 1 and st["clip_frac"] == 0.0 and abs(st["ratio_mean"] - 1.0) < 1e-6


def test_ppo_epochs_clip_on_the_second_pass(tiny):
    d, _ = tiny
    st = _updater(d, lr=5.0, mini_batch_size=None, ppo_epochs=2).update(_two_groups(), n_items=2)
    assert st["optimizer_steps"] == 2 and st["clip_frac_steps"][0] == 0.0 and st["clip_frac_steps"][1] > 0


def test_a_mini_batch_without_signal_takes_no_step(tiny):
    """Items whose groups were dropped (no reward spread) leave their mini-batch empty: no optimizer step."""
    d, _ = tiny
    samples = [s for s in _two_groups() if s.group == 1]
    st = _updater(d, lr=0.1, mini_batch_size=1).update(samples, n_items=2)
    assert st["mini_batches"] == 2 and st["optimizer_steps"] == 1 and st["sequences"] == 2


def test_trained_logprobs_match_full_logits(tiny):
    """The padding-free, trained-positions-only log-probs equal log_softmax of the full logits."""
    from score_distill.rl.grpo import trained_logprobs

    d, _ = tiny
    samples = _two_groups()
    upd = _updater(d, lr=0.0)
    with torch.no_grad():
        got = trained_logprobs(upd.model, samples, "cpu")
        want = []
        for s in samples:
            ids = torch.tensor([s.input_ids])
            lp = torch.log_softmax(upd.model(input_ids=ids).logits[0, :-1].float(), -1)
            lp = lp.gather(1, ids[0, 1:, None])[:, 0]
            want.append(lp[torch.tensor(s.loss_mask[1:]) == 1])
    assert torch.allclose(got, torch.cat(want), atol=1e-5)
