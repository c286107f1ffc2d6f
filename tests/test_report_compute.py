"""The report's per-stage SFT compute, read back from what the trainer left on disk."""

from __future__ import annotations

import json

from score_distill.report.compute import sft_compute


def _train_dir(tmp_path, logged_tokens: int, tokens_seen: int, before_resume: int | None = None):
    d = tmp_path / "train"
    (d / "checkpoint-96").mkdir(parents=True)
    (d / "train_result.json").write_text(json.dumps({"steps": 96, "tokens_seen": tokens_seen,
                                                     "tokens_per_epoch": 48869, "trained_tokens_per_epoch": 20876}))
    history = [{"step": 96, "loss": 0.1, "num_tokens": logged_tokens, "num_trained_tokens": 27784}]
    if before_resume is not None:  # the checkpoint's history holds the steps before the resume, then the rest
        history.insert(0, {"step": 64, "loss": 0.2, "num_tokens": before_resume,
                           "num_trained_tokens": before_resume // 10})
    (d / "checkpoint-96" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    return d


def test_sft_compute_reads_the_log(tmp_path):
    d = _train_dir(tmp_path, 192404, 192404)
    assert sft_compute(d) == {"sft_steps": 96, "sft_tokens": 192404, "sft_trained_tokens": 27784}


def test_a_log_restarted_by_a_resume_is_not_taken_for_the_total(tmp_path):
    # Trained before the trainer restored its counts at a resume: the log holds only the steps since.
    d = _train_dir(tmp_path, 65151, 192404, before_resume=127253)
    assert sft_compute(d) == {"sft_steps": 96, "sft_tokens": 192404}


def test_a_log_lagging_the_last_step_keeps_its_trained_count(tmp_path):
    # logging_steps > 1: the last logged count trails the trainer's exact one, but it never falls.
    d = _train_dir(tmp_path, 190000, 192404, before_resume=120000)
    assert sft_compute(d) == {"sft_steps": 96, "sft_tokens": 192404, "sft_trained_tokens": 27784}
