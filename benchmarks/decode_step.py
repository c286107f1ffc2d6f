"""Where one batched decode step's time goes: the model's matrix products against its attention.

    python benchmarks/decode_step.py [--model smollm2-135m] [--rows 32] [--context 512] [--json out.json]

One decode step of ``--rows`` rows, each with ``--context`` cached positions (random keys/values in the engine's
own cache), profiled with ``torch.profiler`` over a few steps. Also times the model's largest matrix product
alone against fresh weights (so it streams them from memory, as a decode step does), and reports the rates:
whether the step is bound by reading memory or by the matrix units at this row count decides what an engine
change can gain.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from score_distill.engine.kv import SlotCache
from score_distill.models.hf import TransformersPolicy


def filled_cache(cfg, rows: int, context: int) -> SlotCache:
    cache = SlotCache(cfg.num_hidden_layers, rows)
    cap = (context // 256 + 1) * 256
    cache.capacity = cap
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    for layer in cache.layers:
        layer.keys = torch.randn(rows, cfg.num_key_value_heads, cap, head_dim) * 0.1
        layer.values = torch.randn(rows, cfg.num_key_value_heads, cap, head_dim) * 0.1
        layer.device, layer.is_initialized = torch.device("cpu"), True
    return cache


def _sig(x: float) -> float:
    """Three significant figures: a rate of the tiny test model is not rounded to 0."""
    return float(f"{x:.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    model = TransformersPolicy(a.model, batch_size=a.rows).model.eval()
    cfg = model.config
    b, n = a.rows, a.context
    cache = filled_cache(cfg, b, n + 1)
    pos = torch.full((b,), n)
    mask = (torch.arange(n + 1)[None, :] <= pos[:, None]).view(b, 1, 1, n + 1)
    ids = torch.randint(0, cfg.vocab_size, (b, 1))

    def step():
        cache.prepare(slice(0, b), n + 1, positions=pos)
        model(input_ids=ids, position_ids=pos.view(b, 1), attention_mask=mask, use_cache=True, logits_to_keep=1,
              past_key_values=cache)

    with torch.inference_mode():
        step()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        step_s = (time.perf_counter() - t0) / a.steps
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.steps):
                step()
    ops = {e.key: e.self_cpu_time_total / 1e6 / a.steps for e in prof.key_averages()}
    total = sum(ops.values())
    mm = ops.get("aten::mm", 0.0) + ops.get("aten::addmm", 0.0)
    attn = sum(v for k, v in ops.items() if "scaled_dot_product" in k)
    params = sum(p.numel() for p in model.parameters())
    _, kv_heads, _, head_dim = cache.layers[0].keys.shape
    kv_bytes = 2 * cfg.num_hidden_layers * b * (n + 1) * kv_heads * head_dim * 4

    # The model's widest MLP product alone, fresh weights each call (a decode step reads each weight once).
    inter, hidden = cfg.intermediate_size, cfg.hidden_size
    x = torch.randn(b, hidden)
    ws = [torch.randn(inter, hidden) for _ in range(32)]
    for w in ws[:4]:
        F.linear(x, w)
    t0 = time.perf_counter()
    for i in range(128):
        F.linear(x, ws[i % 32])
    one = (time.perf_counter() - t0) / 128
    out = {
        "model": a.model, "rows": b, "context": n, "threads": torch.get_num_threads(), "step_s": round(step_s, 6),
        "profiled_s": round(total, 6), "matmul_s": round(mm, 6), "attention_s": round(attn, 6),
        "matmul_gflops": _sig(2 * params * b / mm / 1e9) if mm else None,
        "attention_kv_gb_s": _sig(kv_bytes / attn / 1e9) if attn else None,
        "mlp_product": {"shape": [b, hidden, inter], "ms": round(one * 1e3, 3),
                        "gflops": _sig(2 * b * hidden * inter / one / 1e9),
                        "weights_gb_s": _sig(inter * hidden * 4 / one / 1e9)},
    }
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
