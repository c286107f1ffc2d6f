"""Sandbox overhead: run() of a trivial cell on a warm interpreter, and starting an episode.

    PYTHONPATH=. python benchmarks/sandbox_latency.py [--n 300]
Prints median and p95 (ms) for: run("print(1)"), Sandbox() cold start, SandboxPool.new() (warm).
"""

from __future__ import annotations

import argparse
import statistics
import time

from score_distill.sandbox import Sandbox, SandboxConfig, SandboxPool


def _stats(name: str, xs: list[float]) -> None:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
    print(f"{name:<34} median {statistics.median(xs) * 1e3:8.2f} ms   p95 {p95 * 1e3:8.2f} ms   (n={len(xs)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    n = ap.parse_args().n
    cfg = SandboxConfig()
    with Sandbox(cfg) as sb:
        sb.run("print(0)")
        runs = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = sb.run("print(1)")
            runs.append(time.perf_counter() - t0)
            assert r.observation == "1\n"
        print(f"isolation: {sb.isolation['network']} network, {sb.isolation['filesystem']}, "
              f"privileges {sb.isolation['privileges']}")
    _stats('run("print(1)"), warm', runs)
    cold = []
    for _ in range(max(5, n // 20)):
        t0 = time.perf_counter()
        sb = Sandbox(cfg)
        cold.append(time.perf_counter() - t0)
        sb.close()
    _stats("Sandbox() cold start", cold)
    warm = []
    with SandboxPool(cfg, max_workers=2, warm=2) as pool:
        for _ in range(max(5, n // 20)):
            time.sleep(0.3)  # let the pool refill, as between episodes
            t0 = time.perf_counter()
            sb = pool.new()
            warm.append(time.perf_counter() - t0)
            sb.close()
    _stats("SandboxPool.new() (pre-spawned)", warm)


if __name__ == "__main__":
    main()
