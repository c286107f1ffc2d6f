"""The sandbox pool at paper scale: 32, 128 and 256 live interpreters at once.

    PYTHONPATH=. python benchmarks/sandbox_pool.py [--sizes 32 128 256] [--cap auto|size|N] [--json PATH]

For each size, episodes are admitted the way score_distill.agent.loop does (one thread, while the
pool has room), every live interpreter runs one cell (``--cell``; default: imports numpy, as the
math tasks do), then the figures are taken with all of them alive:
start latency of ``SandboxPool.new()``, per-interpreter memory (PSS and RSS from smaps_rollup),
the host process's peak RSS and open fds, the machine's MemAvailable drop, and failures. Episodes
that do not fit (the pool's cap: host_capacity's plan, or ``--cap``) queue and run after the first
ones close; none may be lost. Prints a table; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time

from score_distill.sandbox import PoolFull, SandboxConfig, SandboxPool
from score_distill.sandbox.capacity import _meminfo_mb, host_capacity

DEFAULT_CELL = "import math, collections, numpy as np\nx = int(np.arange(100).sum())\nprint(x)"


def _smaps_mb(pid: int) -> tuple[float, float]:
    """(PSS, RSS) of one process in MB."""
    vals = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("Pss:", "Rss:"):
                vals[parts[0]] = int(parts[1]) / 1024
    return vals.get("Pss:", 0.0), vals.get("Rss:", 0.0)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run_size(n: int, cfg: SandboxConfig, cell: str, cap: int | None, workers: int) -> dict:
    mem0 = _meminfo_mb("MemAvailable")
    t_start = time.perf_counter()
    starts, cells, failures = [], [], []
    done = rounds = 0
    peak = {"live": 0, "pss": [], "rss": [], "mem_drop_mb": 0, "host_fds": 0}
    with SandboxPool(cfg, max_workers=workers, warm=2, max_live=cap) as pool:
        pending = list(range(n))
        while pending:
            live = []
            while pending and (not live or pool.has_room()):
                t0 = time.perf_counter()
                try:
                    # Never wait in new() while holding live ones: only their closing, here, frees a slot.
                    sb = pool.new(block=not live)
                except PoolFull:  # the host refused one more below the cap: the rest queue for the next round
                    break
                except Exception as e:  # counted, and the episode stays queued: nothing is lost
                    failures.append(f"new(): {e}")
                    break
                starts.append(time.perf_counter() - t0)
                live.append((pending.pop(0), sb))
            if not live:
                break
            rounds += 1
            t0 = time.perf_counter()
            results = pool.run_batch([(sb, cell, None) for _, sb in live])
            cells.append(time.perf_counter() - t0)
            pids = []
            for (i, sb), r in zip(live, results):
                if r.error is not None:
                    failures.append(f"episode {i}: {r.error}: {r.observation[-200:]}")
                else:
                    pids.append(sb.pid)
            if len(live) > peak["live"]:  # figures with the most interpreters alive at once
                mems = [_smaps_mb(p) for p in pids]
                avail = _meminfo_mb("MemAvailable")
                peak.update(live=len(live), pss=[m[0] for m in mems], rss=[m[1] for m in mems],
                            mem_drop_mb=(mem0 - avail) if mem0 is not None and avail is not None else None,
                            host_fds=len(os.listdir("/proc/self/fd")))
            for _, sb in live:
                sb.close()
                done += 1
        max_live, waits, note = pool.max_live, pool.waits, pool.capacity_note
    return {
        "interpreters": n,
        "pool_max_live": max_live,
        "pool_capacity": note,
        "peak_live": peak["live"],
        "episodes_done": done,
        "episodes_lost": n - done,
        "admission_rounds": rounds,  # 1: all fitted at once; more: the rest queued behind the first
        "waits_in_new": waits,
        "failures": len(failures),
        "failure_samples": failures[:5],
        "start_latency_ms": {"median": statistics.median(starts) * 1e3 if starts else None,
                             "p95": _pct(starts, 0.95) * 1e3, "max": max(starts, default=float("nan")) * 1e3},
        "first_cell_batch_s": cells,  # wall time of one cell in every live interpreter, per round
        "per_interpreter_pss_mb": {"median": statistics.median(peak["pss"]) if peak["pss"] else None,
                                   "mean": statistics.fmean(peak["pss"]) if peak["pss"] else None,
                                   "max": max(peak["pss"], default=None)},
        "per_interpreter_rss_mb": {"median": statistics.median(peak["rss"]) if peak["rss"] else None,
                                   "max": max(peak["rss"], default=None)},
        "interpreters_total_pss_mb": sum(peak["pss"]),
        "machine_mem_available_drop_mb": peak["mem_drop_mb"],
        "host_open_fds_at_peak": peak["host_fds"],
        "host_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": time.perf_counter() - t_start,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 256])
    ap.add_argument("--cap", default="auto", help="max_live of the pool: a number, 'auto' (what host_capacity "
                                                  "plans for this machine) or 'size' (each size itself)")
    ap.add_argument("--cell", default=DEFAULT_CELL, help="code each interpreter runs once")
    ap.add_argument("--workers", type=int, default=4, help="threads running cells (the pool's max_workers)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    cfg = SandboxConfig()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    machine = {"cpus": os.cpu_count(), "mem_total_mb": _meminfo_mb("MemTotal"),
               "mem_available_mb": _meminfo_mb("MemAvailable"), "kernel": platform.release(),
               "loadavg_at_start": [float(x) for x in load], "root": os.geteuid() == 0,
               "host_capacity": host_capacity(cfg).describe()}
    print(f"machine: {machine}")
    rows = []
    for n in args.sizes:
        cap = None if args.cap == "auto" else n if args.cap == "size" else int(args.cap)
        row = run_size(n, cfg, args.cell, cap, args.workers)
        rows.append(row)
        print(f"{n:>4} interpreters: start median {row['start_latency_ms']['median']:.1f} ms "
              f"p95 {row['start_latency_ms']['p95']:.1f} ms | PSS/interp median "
              f"{row['per_interpreter_pss_mb']['median']:.1f} MB, RSS median "
              f"{row['per_interpreter_rss_mb']['median']:.1f} MB | all PSS {row['interpreters_total_pss_mb']:.0f} MB,"
              f" MemAvailable -{row['machine_mem_available_drop_mb']} MB | host peak RSS "
              f"{row['host_peak_rss_mb']:.0f} MB, fds {row['host_open_fds_at_peak']} | peak live "
              f"{row['peak_live']} (cap {row['pool_max_live']}), done {row['episodes_done']}/{n}, "
              f"failures {row['failures']} | {row['seconds']:.1f} s")
    if args.json:
        out = {"benchmark": "sandbox_pool", "machine": machine, "cell": args.cell, "cap": args.cap,
               "config": {"memory_mb": cfg.memory_mb, "max_processes": cfg.max_processes,
                          "max_open_files": cfg.max_open_files, "workdir_mb": cfg.workdir_mb},
               "sizes": rows}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
