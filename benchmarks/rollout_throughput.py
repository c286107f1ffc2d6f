"""Rollout throughput: raw batched ``generate``, the agent loop on the rollout engine, and the old
re-encoding loop, in one run, same model, same tasks, same live batch.

    python benchmarks/rollout_throughput.py [--model smollm2-135m] [--batch 32] [--episodes N]
        [--max-new-tokens 128] [--max-steps 4] [--json PATH]

Prints and, with ``--json PATH``, writes:

* ``raw_tok_s``: one batched ``model.generate`` of the tasks' first prompts (``TransformersPolicy.generate``);
* ``agent_tok_s``: the full agent loop on the engine (KV caches kept across turns, continuous batching,
  shared prefixes; sandbox execution, parsing and bookkeeping included);
* ``reencode_tok_s``: the same loop generating round by round, every conversation re-encoded each
  round (the path backends without an engine take; selected here by hiding the engine);
* ``matmul_gflops``: this machine's fp32 matmul rate, measured in the same run;
* ``live_batch``, ``peak_rss_mb`` and where the engine's tokens went (prefilled, forked, decoded).

Targets (issue 28): agent_tok_s >= 3 x reencode_tok_s, agent_tok_s >= raw_tok_s, and at least
150 tok/s with 32 live episodes of SmolLM2-135M on 2 cores. ``--skip-reencode`` leaves out the slow
old path.

``--draft N`` turns on the engine's speculative decoding (up to N prompt-lookup ids verified per row and step);
``--skip-raw`` leaves out the raw ``generate``.

``--episodes`` (default: ``--batch``) runs more episodes than live rows through both loops, a waiting one
joining as one ends, as every stage does (MPS, RL, evaluation); with as many episodes as rows the time ends
with the slowest few episodes decoding alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes
from score_distill.models.base import SamplingParams
from score_distill.models.hf import TransformersPolicy
from score_distill.sandbox import SandboxConfig, SandboxPool
from score_distill.tasks.registry import make_tasks
from score_distill.trajectory import steps_to_messages


class ReencodingPolicy:
    """The policy without its engine: the agent loop then calls ``generate`` once per round with every
    live conversation rendered and tokenized again (the old path)."""

    def __init__(self, inner: TransformersPolicy):
        self.inner, self.name, self.batch_size = inner, inner.name, inner.batch_size

    def generate(self, chats, params):
        return self.inner.generate(chats, params)


def matmul_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def run_loop(policy, tasks, pool, agent) -> tuple[float, int, int, int]:
    t0 = time.perf_counter()
    trajs = run_episodes(policy, [EpisodeStart(t, id=t.id) for t in tasks], pool, agent, progress=None)
    seconds = time.perf_counter() - t0
    tokens = sum(s.completion_tokens for t in trajs for s in t.steps)
    return seconds, tokens, sum(len(t.steps) for t in trajs), len(trajs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=32, help="live episodes (and the raw generate batch)")
    ap.add_argument("--episodes", type=int, default=None, help="episodes through each loop (default: --batch)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=4)
    ap.add_argument("--suite", default="math")
    ap.add_argument("--horizon", type=int, default=3)
    ap.add_argument("--skip-reencode", action="store_true")
    ap.add_argument("--no-shared-attention", action="store_true",
                    help="the engine reads every row's copy of a shared prefix (plain attention)")
    ap.add_argument("--no-mixed-steps", action="store_true",
                    help="the engine feeds each observation in a forward of its own, not in the decode step")
    ap.add_argument("--draft", type=int, default=0, metavar="N",
                    help="speculative decoding: the engine verifies up to N prompt-lookup ids per row and step")
    ap.add_argument("--skip-raw", action="store_true", help="leave out the raw batched generate")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    policy = TransformersPolicy(args.model, batch_size=args.batch)
    policy.shared_attention = not args.no_shared_attention
    policy.mixed_steps = not args.no_mixed_steps
    policy.draft_tokens = args.draft
    n_episodes = args.episodes or args.batch
    tasks = make_tasks(args.suite, max(n_episodes, args.batch), args.horizon, seed=123, split="eval")
    params = SamplingParams(temperature=0.6, max_new_tokens=args.max_new_tokens, seed=0)
    agent = AgentConfig(max_steps=args.max_steps, max_new_tokens=args.max_new_tokens, sampling=params,
                        max_live_episodes=args.batch)
    gflops = matmul_gflops()

    # Warm-up so one-time costs (kernels, allocator, stop-string tables) count against no side.
    policy.generate([steps_to_messages(tasks[0], [])], params.model_copy(update={"max_new_tokens": 8}))
    pool = SandboxPool(SandboxConfig(), max_workers=4)
    try:
        run_loop(policy, tasks[:1], pool, agent.model_copy(update={"max_steps": 1, "max_new_tokens": 8}))

        raw_s = raw_tokens = 0
        if not args.skip_raw:
            t0 = time.perf_counter()
            out = policy.generate([steps_to_messages(t, []) for t in tasks[: args.batch]], params)
            raw_s = time.perf_counter() - t0
            raw_tokens = sum(c.completion_tokens for c in out)

        engines = []
        make = policy.rollout_engine

        def keep(*a):
            engines.append(make(*a))
            return engines[-1]

        policy.rollout_engine = keep
        agent_s, agent_tokens, agent_steps, n = run_loop(policy, tasks[:n_episodes], pool, agent)
        del policy.rollout_engine
        stats = engines[-1].stats if engines and engines[-1] is not None else {}

        re_s = re_tokens = re_steps = 0
        if not args.skip_reencode:
            re_s, re_tokens, re_steps, _ = run_loop(ReencodingPolicy(policy), tasks[:n_episodes], pool, agent)
    finally:
        pool.close()

    res = {
        "model": args.model, "suite": args.suite, "horizon": args.horizon, "max_steps": args.max_steps,
        "max_new_tokens": args.max_new_tokens, "live_batch": args.batch, "episodes": n,
        "shared_attention": policy.shared_attention, "mixed_steps": policy.mixed_steps, "draft_tokens": args.draft,
        "torch_threads": torch.get_num_threads(),
        "raw_tokens": raw_tokens, "raw_seconds": round(raw_s, 3) if raw_s else None,
        "raw_tok_s": raw_tokens / raw_s if raw_s else None,
        "agent_tokens": agent_tokens, "agent_steps": agent_steps, "agent_seconds": round(agent_s, 3),
        "agent_tok_s": agent_tokens / agent_s,
        "reencode_tokens": re_tokens or None, "reencode_steps": re_steps or None,
        "reencode_seconds": round(re_s, 3) if re_s else None,
        "reencode_tok_s": (re_tokens / re_s) if re_s else None,
        "matmul_gflops": gflops, "peak_rss_mb": round(peak_rss_mb(), 1), "engine": stats,
    }
    print(f"model {args.model}, {args.suite} H={args.horizon}, {n} episodes, live batch {args.batch}, "
          f"max_new_tokens {args.max_new_tokens}, max_steps {args.max_steps}, {res['torch_threads']} threads")
    if raw_s:
        print(f"raw generate  : {raw_tokens:6d} tokens in {raw_s:8.2f} s = {res['raw_tok_s']:7.1f} tok/s")
    print(f"agent (engine): {agent_tokens:6d} tokens in {agent_s:8.2f} s = {res['agent_tok_s']:7.1f} tok/s "
          f"({agent_steps} steps)")
    if re_s:
        print(f"agent (re-encode every round): {re_tokens:6d} tokens in {re_s:8.2f} s = "
              f"{res['reencode_tok_s']:7.1f} tok/s ({re_steps} steps)")
        print(f"engine / re-encode = {res['agent_tok_s'] / res['reencode_tok_s']:.2f}x (target >= 3x)")
    if raw_s:
        print(f"engine / raw generate = {res['agent_tok_s'] / res['raw_tok_s']:.2f}x (target >= 1x)")
    print(f"engine tokens: {stats}")
    print(f"matmul {gflops:.0f} GFLOP/s fp32, peak RSS {res['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
