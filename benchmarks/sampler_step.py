"""Time to choose one token for every engine row, the model's forward left out.

    python benchmarks/sampler_step.py [--rows 40] [--vocab 49152] [--seen 600] [--json out.json]

``Sampler.choose`` on random logits with the default sampling settings (temperature 0.6, top-k 20, top-p 0.95,
repetition penalty 1.1), each row with its own generator and ``--seen`` distinct ids already in its context. At
every decode step the engine pays this once besides the forward.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from score_distill.engine.sampling import Sampler
from score_distill.models.base import SamplingParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--seen", type=int, default=600)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    params = SamplingParams()
    sampler = Sampler(params, a.rows, a.vocab, torch.device("cpu"))
    for r in range(a.rows):
        sampler.reset_row(r, torch.randperm(a.vocab, generator=g)[: a.seen].tolist())
    gens = [torch.Generator().manual_seed(i) for i in range(a.rows)]
    logits = torch.randn(a.rows, a.vocab, generator=g) * 3
    times = []
    for i in range(a.steps + 3):
        x = logits.clone()
        t0 = time.perf_counter()
        sampler.choose(x, slice(0, a.rows), gens)
        if i >= 3:  # warm-up
            times.append(time.perf_counter() - t0)
    times.sort()
    out = {"rows": a.rows, "vocab": a.vocab, "seen": a.seen, "threads": torch.get_num_threads(),
           "params": params.model_dump(include={"temperature", "top_k", "top_p", "repetition_penalty"}),
           "median_ms": round(times[len(times) // 2] * 1e3, 3), "p90_ms": round(times[int(len(times) * 0.9)] * 1e3, 3)}
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
