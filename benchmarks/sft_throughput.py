"""SFT throughput against the machine's matmul rate, in one run.

    python benchmarks/sft_throughput.py [--model smollm2-135m] [--horizon 2] [--batch 4] [--steps 5] --json sft.json
    python benchmarks/sft_throughput.py --trajectories RUN/bc_baseline/teacher_trajectories.jsonl
    python benchmarks/sft_throughput.py --modes full,lora --padded     # padded batches, for comparison

Trains with ``train_sft`` (the project's SFT: padding-free rows, loss on the trained tokens only) on teacher
trajectories: by default the oracle teacher's solutions of ``--horizon`` math tasks (what BC init trains on,
built in-process in seconds), or a run's trajectories. The first step is warm-up; the others are timed.

Prints and, with ``--json PATH``, writes per mode: ``tokens_per_s`` (real tokens of the sequences, no padding,
trained or context), ``trained_tokens_per_s``, ``model_gflops`` (6 x parameters x tokens_per_s, the usual
training-cost model; parameters as the model counts them, tied embeddings once) and ``matmul_gflops`` (square
matmuls in the training dtype, on the same threads, measured in the same run), and their ratio ``mfu``.
The issue-28 target for a full fine-tune of SmolLM2-135M on H=2 trajectories: ``mfu >= 0.6``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from score_distill.training.sft import SFTConfig, resolve_model_path, train_sft
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import read_jsonl


class _Meter(TrainerCallback):
    """Wall time at the end of every optimizer step, and the trainer's cumulative token counts per step."""

    def __init__(self):
        self.t: dict[int, float] = {}
        self.tokens: dict[int, tuple[int, int]] = {}

    def on_step_end(self, args, state, control, **kw):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.t[state.global_step] = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "num_tokens" in logs:
            self.tokens[state.global_step] = (int(logs["num_tokens"]), int(logs.get("num_trained_tokens", 0)))


def matmul_gflops(dtype: torch.dtype, device: str, n: int = 2048, seconds: float = 3.0) -> float:
    """Sustained rate of n x n matmuls: the ceiling the training rate is compared with."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or reps < 3:
        for _ in range(20 if device == "cuda" else 1):
            a @ b
            reps += 1
        sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def teacher_trajectories(n: int, horizon: int, seed: int) -> list[Trajectory]:
    from score_distill.tasks.registry import make_tasks
    from score_distill.teachers.oracle import OracleTeacher

    teacher = OracleTeacher()
    try:
        return teacher.solve(make_tasks("math", n, horizon=horizon, seed=seed))
    finally:
        teacher.close()


def run_mode(path: str, recs: list, mode: str, a: argparse.Namespace, n_params: int) -> dict:
    cfg = SFTConfig(learning_rate=1e-5, max_steps=a.steps, batch_size=a.batch, grad_accum=a.grad_accum,
                    max_length=a.max_length,
                    lora=mode == "lora", save_steps=10_000, report_to="none", warmup_ratio=0.0,
                    padding_free=not a.padded, logging_steps=1, bf16=a.bf16 or "auto")
    meter = _Meter()
    with tempfile.TemporaryDirectory() as d:
        res = train_sft(path, recs, cfg, d, callbacks=[meter])
    first, last = 1, res.steps  # step 1 is warm-up: time and count steps 2..last
    if last <= first or first not in meter.tokens or last not in meter.tokens:
        raise SystemExit(f"need at least 2 logged steps (got {res.steps}); raise --steps")
    secs = meter.t[last] - meter.t[first]
    tokens = meter.tokens[last][0] - meter.tokens[first][0]
    trained = meter.tokens[last][1] - meter.tokens[first][1]
    tps = tokens / secs
    return {"mode": mode, "padding_free": not a.padded, "timed_steps": last - first, "seconds": round(secs, 3),
            "tokens_per_step": round(tokens / (last - first), 1), "tokens_per_s": round(tps, 2),
            "trained_tokens_per_s": round(trained / secs, 2), "params": n_params,
            "model_gflops": round(6 * n_params * tps / 1e9, 2), "final_loss": res.losses[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--horizon", type=int, default=2, help="math horizon of the oracle teacher's trajectories")
    ap.add_argument("--trajectories", default=None, metavar="JSONL", help="train on these instead (a run's records)")
    ap.add_argument("--batch", type=int, default=4, help="sequences per forward (the study's SFT batch)")
    ap.add_argument("--grad-accum", type=int, default=1,
                    help="forwards per optimizer step (a step trains batch x grad-accum sequences)")
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps; the first is warm-up")
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--modes", default="full", help="comma list of full, lora")
    ap.add_argument("--padded", action="store_true", help="padded batches instead of padding-free rows")
    ap.add_argument("--bf16", action="store_true",
                    help="bf16 autocast (SFTConfig.bf16=true) also on CPU: fast only on CPUs with AMX or AVX512-BF16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the figures here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    path = resolve_model_path(a.model)
    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    recs = (read_jsonl(a.trajectories, Trajectory) if a.trajectories
            else teacher_trajectories(a.batch * a.grad_accum * a.steps, a.horizon, seed=0))
    cuda = torch.cuda.is_available()
    bf16 = a.bf16 or (cuda and torch.cuda.is_bf16_supported())  # SFTConfig.bf16="auto": autocast bf16 on such GPUs
    dtype = torch.bfloat16 if bf16 else torch.float32
    mm = matmul_gflops(dtype, "cuda" if cuda else "cpu")
    out = {"model": a.model, "data": a.trajectories or f"oracle teacher, math H={a.horizon}", "batch": a.batch,
           "grad_accum": a.grad_accum,
           "steps": a.steps, "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
           "threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch."),
           "matmul_gflops": round(mm, 2), "modes": []}
    for mode in a.modes.split(","):
        r = run_mode(path, recs, mode, a, n_params)
        r["mfu"] = round(r["model_gflops"] / mm, 3)
        out["modes"].append(r)
        print(f"{mode:5s} model={a.model} batch={a.batch} tokens/step={r['tokens_per_step']:.0f} "
              f"tokens/s={r['tokens_per_s']:.1f} (trained {r['trained_tokens_per_s']:.1f}) "
              f"model_gflops={r['model_gflops']:.1f} matmul_gflops={mm:.1f} ratio={r['mfu']:.2f}")
    first = out["modes"][0]  # top-level figures: the first mode (full fine-tuning by default)
    out.update({k: first[k] for k in ("tokens_per_s", "trained_tokens_per_s", "model_gflops", "mfu")})
    # The process's peak: model loading, the trainer's states and the largest step's activations.
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(f"peak RSS {out['peak_rss_gb']} GB")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
