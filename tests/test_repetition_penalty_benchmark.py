"""benchmarks/repetition_penalty.py: paired per-task outcomes of each model under each penalty."""

from __future__ import annotations

import json
import sys

from score_distill.models.tiny import build_tiny_model


def test_it_records_every_task_under_every_penalty(tmp_path, monkeypatch, benchmark_script):
    model = build_tiny_model(tmp_path / "tiny" / "stage" / "train" / "model", seed=0)
    out = tmp_path / "p.json"
    monkeypatch.setattr(sys, "argv", ["repetition_penalty", str(model), "--suite", "math", "--n", "3",
                                      "--penalties", "1.1,1.0", "--max-steps", "1", "--max-new-tokens", "8",
                                      "--json", str(out)])
    benchmark_script("repetition_penalty").main()
    res = json.loads(out.read_text())
    assert set(res["outcomes"]) == {"stage@1.1", "stage@1.0"}
    assert all(len(v) == 3 for v in res["outcomes"].values())
    (pair,) = res["paired"]
    assert pair["a"] == "stage@1.1" and pair["b"] == "stage@1.0" and 0 <= pair["p_value"] <= 1
