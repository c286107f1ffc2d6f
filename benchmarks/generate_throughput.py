"""Raw batched generation throughput of a local student (TransformersPolicy.generate).

    python benchmarks/generate_throughput.py                       # smollm2-135m, batch 8, 128 new tokens
    python benchmarks/generate_throughput.py --model tiny --batch 32 --new-tokens 64 --repeats 3

Prints one line per repeat and a summary (generated tokens per second over the whole batch). A short
warm-up generation runs first so the figures exclude paging the weights in from disk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

QUESTIONS = [
    "Alice has 5 apples and buys 3 more each week for 4 weeks. How many apples does she have?",
    "What is the sum of the first 20 odd numbers?",
    "A train travels 120 km in 1.5 hours. What is its average speed in km/h?",
    "Who wrote the novel that introduced the character Sherlock Holmes?",
    "How many seconds are there in a leap year?",
    "Find the smallest prime number greater than 1000.",
    "If a rectangle has a perimeter of 30 and a width of 5, what is its area?",
    "What is 17 squared minus 13 squared?",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help='"smollm2-135m", "tiny", or a model folder')
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    args = ap.parse_args(argv)

    # Imported after argument parsing so that `--help` and argument errors answer at once.
    import torch

    from score_distill.agent import format as fmt
    from score_distill.models.base import SamplingParams
    from score_distill.models.hf import TransformersPolicy

    t0 = time.monotonic()
    policy = TransformersPolicy.load(args.model, batch_size=args.batch, device=args.device)
    load_s = time.monotonic() - t0
    chats = [[{"role": "system", "content": fmt.system_prompt()},
              {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(args.batch)]
    params = SamplingParams(temperature=args.temperature, max_new_tokens=args.new_tokens, seed=0)
    policy.generate(chats[:1], params.model_copy(update={"max_new_tokens": 4}))  # warm-up

    rates = []
    for r in range(args.repeats):
        t = time.monotonic()
        out = policy.generate(chats, params.model_copy(update={"seed": r}))
        secs = time.monotonic() - t
        gen = sum(c.completion_tokens for c in out)
        prompt = sum(c.prompt_tokens for c in out)
        rates.append(gen / secs)
        print(f"repeat {r}: {len(out)} seqs, {prompt} prompt tok, {gen} new tok "
              f"(longest {max(c.completion_tokens for c in out)}), {secs:.2f} s, {gen / secs:.1f} new tok/s")
    summary = {
        "model": args.model, "device": str(policy.device), "dtype": str(policy.model.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(), "batch": args.batch, "max_new_tokens": args.new_tokens,
        "load_s": round(load_s, 2), "new_tok_per_s_median": round(statistics.median(rates), 1),
    }
    print(f"{args.model} on {summary['device']} ({summary['dtype']}, {summary['threads']} threads): batch "
          f"{args.batch}, <= {args.new_tokens} new tokens: median {summary['new_tok_per_s_median']} new tok/s "
          f"(load {load_s:.1f} s)")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
