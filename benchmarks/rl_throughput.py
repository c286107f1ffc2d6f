"""RL throughput on CPU: rollout (generation) tokens/s and GRPO update tokens/s.

    python benchmarks/rl_throughput.py [--model smollm2-135m] [--group 4] [--new-tokens 64] [--threads 2] [--json P]

Rollout: one batched generate of G samples for a math prompt with the agent's system prompt.
Update: one GRPOUpdater.update on those sequences (old log-probs, then forward + backward + AdamW per mini-batch
of ``--mini-batch`` sequences' groups; log-probs at completion positions only), trained tokens counted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from score_distill.models.base import SamplingParams
from score_distill.models.hf import TransformersPolicy, load_student
from score_distill.rl.grpo import GRPOUpdater, TrainSample, group_advantages
from score_distill.trajectory import Task, steps_to_messages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mini-batch", type=int, default=None,
                    help="samples per optimizer step (each its own group here); default: one step")
    ap.add_argument("--json", default=None, metavar="PATH")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, tok = load_student(a.model, device="cpu", dtype=torch.float32)
    policy = TransformersPolicy(model, tokenizer=tok)
    chat = steps_to_messages(Task(id="b", question="What is the sum of the first 100 odd numbers?", answer="10000"), [])
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0,
                            max_new_tokens=a.new_tokens, seed=0)
    t0 = time.perf_counter()
    outs = policy.generate([chat] * a.group, params)
    gen_s = time.perf_counter() - t0
    gen_tokens = sum(c.completion_tokens for c in outs)
    prompt = policy.encode_chats([chat])[0]
    samples = []
    advs = group_advantages([float(i % 2) for i in range(a.group)], [0] * a.group).tolist()
    for i, (c, adv) in enumerate(zip(outs, advs)):
        ids = c.token_ids or tok(c.text, add_special_tokens=False)["input_ids"]
        samples.append(TrainSample(prompt + list(ids), [0] * len(prompt) + [1] * len(ids), adv, group=i))
    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    m, opt = acc.prepare(model, opt)
    upd = GRPOUpdater(m, opt, acc, micro_batch_size=a.micro_batch, pad_id=tok.pad_token_id,
                      mini_batch_size=a.mini_batch)
    t0 = time.perf_counter()
    st = upd.update(samples)
    upd_s = time.perf_counter() - t0
    seq_tokens = sum(len(s.input_ids) for s in samples)
    print(f"model={a.model} threads={a.threads} G={a.group} prompt_tokens={len(prompt)}")
    print(f"rollout: {gen_tokens} generated tokens in {gen_s:.2f}s = {gen_tokens / gen_s:.1f} tok/s")
    print(f"update:  {st['tokens']} trained / {seq_tokens} sequence tokens in {upd_s:.2f}s = "
          f"{st['tokens'] / upd_s:.1f} trained tok/s, {seq_tokens / upd_s:.1f} seq tok/s, "
          f"{st['optimizer_steps']} optimizer steps, clip_frac {st['clip_frac']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "model": a.model, "threads": a.threads, "group": a.group, "prompt_tokens": len(prompt),
            "rollout_tok_s": round(gen_tokens / gen_s, 2), "update_trained_tok_s": round(st["tokens"] / upd_s, 2),
            "update_seq_tok_s": round(seq_tokens / upd_s, 2), "optimizer_steps": st["optimizer_steps"],
            "clip_frac": st["clip_frac"]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
