"""SFT throughput: tokens/s and s/step for LoRA and full fine-tuning of a model.

    python benchmarks/sft_throughput.py [--model smollm2-135m] [--batch 4] [--seq 256] [--steps 6]
    python benchmarks/sft_throughput.py --trajectories RUN/bc_baseline/teacher_trajectories.jsonl --modes full

Runs ``train_sft`` on synthetic records of ~``seq`` tokens, or on real trajectories (a run's
teacher or MPS records, in their lengths: what a stage's step costs), ``batch`` per step; times the
steps after the first (warm-up) and prints one line per mode. CPU unless a GPU is present.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from transformers import AutoTokenizer, TrainerCallback

from score_distill.training.sft import SFTConfig, resolve_model_path, train_sft
from score_distill.trajectory import Step, Task, Trajectory
from score_distill.utils.jsonl import read_jsonl


class _Timer(TrainerCallback):
    def __init__(self):
        self.t: list[float] = []

    def on_step_end(self, args, state, control, **kw):
        self.t.append(time.perf_counter())


def _records(tok, n: int, seq: int) -> list[Trajectory]:
    filler = "x = x + 1\n" * 4
    out = []
    for i in range(n):
        steps = [Step(kind="plan", thought="Compute step by step.")]
        t = Trajectory(task=Task(id=str(i), question=f"Compute {i}", answer="1"), steps=steps)
        while len(tok(tok.apply_chat_template(t.to_messages(system=""), tokenize=False))["input_ids"]) < seq:
            t.steps.append(Step(thought="keep going", code=filler, observation=str(i)))
        out.append(t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--modes", default="lora,full")
    ap.add_argument("--trajectories", default=None, metavar="JSONL",
                    help="train on these trajectories (their own lengths, up to 2048 tokens) instead of synthetic ones")
    a = ap.parse_args()
    path = resolve_model_path(a.model)
    tok = AutoTokenizer.from_pretrained(path)
    recs = read_jsonl(a.trajectories, Trajectory) if a.trajectories else _records(tok, a.batch * a.steps, a.seq)
    max_length = 2048 if a.trajectories else a.seq
    for mode in a.modes.split(","):
        cfg = SFTConfig(learning_rate=1e-5, max_steps=a.steps, batch_size=a.batch, max_length=max_length,
                        lora=mode == "lora", save_steps=10_000, report_to="none",
                        system_prompt=None if a.trajectories else "", warmup_ratio=0.0)
        timer = _Timer()
        with tempfile.TemporaryDirectory() as d:
            res = train_sft(path, recs, cfg, d, callbacks=[timer])
        per_step = (timer.t[-1] - timer.t[0]) / max(1, len(timer.t) - 1)
        tokens_per_step = res.tokens_per_epoch / max(1, len(recs)) * a.batch
        seq = f"mean seq={res.tokens_per_epoch / max(1, len(recs)):.0f}" if a.trajectories else f"seq<={a.seq}"
        print(f"{mode:5s} model={a.model} batch={a.batch} {seq} steps={res.steps} "
              f"s/step={per_step:.3f} tokens/s={tokens_per_step / per_step:.1f} loss={res.losses[-1]:.3f}")


if __name__ == "__main__":
    main()
