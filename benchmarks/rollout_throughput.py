"""Agent-loop throughput against raw batched ``generate``, same model, same batch size, one run.

    python benchmarks/rollout_throughput.py [--model smollm2-135m] [--batch 8] [--max-new-tokens 128]

Prints generated tokens/s for (a) one raw batched generate call on the tasks' first prompts and
(b) the whole agent loop over the same tasks (prompts grow with each step, sandbox execution,
parsing and bookkeeping included), their ratio (target: agent loop >= 80% of raw), where the agent
loop's wall time went, and the sandbox step latency (median, p95; target <= 20 ms median).
"""

from __future__ import annotations

import argparse
import statistics
import time

from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes
from score_distill.models.base import SamplingParams
from score_distill.models.hf import TransformersPolicy
from score_distill.sandbox import SandboxConfig, SandboxPool
from score_distill.tasks.registry import make_tasks
from score_distill.trajectory import steps_to_messages


class TimedPolicy:
    """Wraps a policy to account generate time and tokens inside the agent loop."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self.seconds = 0.0
        self.tokens = 0

    def generate(self, chats, params):
        t0 = time.perf_counter()
        out = self.inner.generate(chats, params)
        self.seconds += time.perf_counter() - t0
        self.tokens += sum(c.completion_tokens for c in out)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=4)
    ap.add_argument("--suite", default="math")
    args = ap.parse_args()

    policy = TransformersPolicy(args.model, batch_size=args.batch)
    tasks = make_tasks(args.suite, args.batch, 3, seed=123, split="eval")
    params = SamplingParams(temperature=0.6, max_new_tokens=args.max_new_tokens, seed=0)

    # Warm-up so one-time costs (kernels, allocator) do not count against either side.
    policy.generate([steps_to_messages(tasks[0], [])], params.model_copy(update={"max_new_tokens": 8}))

    chats = [steps_to_messages(t, []) for t in tasks]
    t0 = time.perf_counter()
    out = policy.generate(chats, params)
    raw_s = time.perf_counter() - t0
    raw_tokens = sum(c.completion_tokens for c in out)

    pool = SandboxPool(SandboxConfig(), max_workers=4)
    timed = TimedPolicy(policy)
    agent = AgentConfig(max_steps=args.max_steps, max_new_tokens=args.max_new_tokens, sampling=params,
                        max_live_episodes=args.batch)
    t0 = time.perf_counter()
    trajs = run_episodes(timed, [EpisodeStart(t) for t in tasks], pool, agent, progress=None)
    loop_s = time.perf_counter() - t0
    exec_s = sum(s.exec_seconds for t in trajs for s in t.steps)

    sb = pool.new()
    lat = []
    for _ in range(200):
        t1 = time.perf_counter()
        sb.run("print(1)")
        lat.append((time.perf_counter() - t1) * 1000)
    pool.close()
    lat.sort()

    raw_tps = raw_tokens / raw_s
    loop_tps = timed.tokens / loop_s
    print(f"model {args.model}, batch {args.batch}, max_new_tokens {args.max_new_tokens}, {args.suite} H=3")
    print(f"raw generate : {raw_tokens:6d} tokens in {raw_s:7.2f} s = {raw_tps:7.1f} tok/s")
    print(f"agent loop   : {timed.tokens:6d} tokens in {loop_s:7.2f} s = {loop_tps:7.1f} tok/s "
          f"({sum(len(t.steps) for t in trajs)} steps, {len(trajs)} episodes)")
    print(f"agent loop / raw generate = {loop_tps / raw_tps:.0%} (target >= 80%)")
    print(f"  loop wall time: generate {timed.seconds:.2f} s, sandbox exec {exec_s:.2f} s (summed over steps), "
          f"other {loop_s - timed.seconds:.2f} s")
    print(f"sandbox step latency (print(1), warm): median {statistics.median(lat):.2f} ms, "
          f"p95 {lat[int(0.95 * len(lat))]:.2f} ms (target <= 20 ms median)")


if __name__ == "__main__":
    main()
