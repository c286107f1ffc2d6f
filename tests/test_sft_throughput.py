"""benchmarks/sft_throughput.py runs and writes consistent figures (tiny model; the figures themselves are not
checked: speed targets live in the benchmark, not in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_tokenize_tiny_model import tiny_model_dir

REPO = Path(__file__).resolve().parents[1]


def test_sft_throughput_json(tmp_path):
    model = tiny_model_dir(tmp_path / "m")
    out = tmp_path / "sft.json"
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sft_throughput.py"), "--model", str(model),
                        "--batch", "2", "--steps", "3", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    full = r["modes"][0]
    assert full["mode"] == "full" and full["padding_free"] and full["timed_steps"] == 2
    assert r["tokens_per_s"] == full["tokens_per_s"] > full["trained_tokens_per_s"] > 0
    assert r["matmul_gflops"] > 0 and r["model_gflops"] == full["model_gflops"]
    expected = 6 * full["params"] * full["tokens_per_s"] / 1e9
    assert abs(full["model_gflops"] - expected) < 0.01 + 1e-3 * full["model_gflops"]
    # Real tokens only: two H=2 trajectories of the oracle teacher per step.
    assert 2 * 100 < full["tokens_per_step"] < 2 * 2048
