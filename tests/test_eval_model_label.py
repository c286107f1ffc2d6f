"""`score-distill eval --model PATH`: two models of one run get their stage's name, not both 'model'."""

from __future__ import annotations

from score_distill.evaluate_cli import model_label


def test_run_models_are_named_after_their_stage():
    assert model_label("runs/r/score_rl/model") == "score_rl"
    assert model_label("runs/r/score_sft/train/model") == "score_sft"
    assert model_label("runs/r/bc_init/train/checkpoint-16") == "bc_init"
    assert model_label("runs/r/score_sft/train/model") != model_label("runs/r/score_rl/model")


def test_other_models_keep_their_name():
    assert model_label("smollm2-135m") == "smollm2-135m"
    assert model_label("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen2.5-0.5B-Instruct"
    assert model_label("/models/my-student") == "my-student"
