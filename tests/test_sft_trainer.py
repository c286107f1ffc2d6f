"""SFT on a tiny random model: loss falls, LoRA merges into a plain folder, resume is exact, DDP runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from pydantic import ValidationError
from test_tokenize_tiny_model import tiny_model_dir
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from score_distill.training.sft import NoTrainedToken, SFTConfig, TrainResult, train_sft
from score_distill.trajectory import Step, Task, Trajectory
from score_distill.utils.jsonl import write_jsonl

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def _records(n: int = 8) -> list[Trajectory]:
    out = []
    for i in range(n):
        a, b = i + 3, 2 * i + 5
        out.append(
            Trajectory(
                task=Task(id=f"t{i}", question=f"What is {a} + {b}?", answer=str(a + b)),
                steps=[
                    Step(kind="plan", thought="Add the two numbers, then submit."),
                    Step(thought="compute the sum", code=f"x = {a} + {b}\nfinal_answer_print(x)",
                         observation=str(a + b), final_answer=str(a + b)),
                ],
            )
        )
    return out


def _cfg(**kw) -> SFTConfig:
    base = dict(learning_rate=3e-3, epochs=3, batch_size=2, grad_accum=2, save_steps=2, max_length=512,
                report_to="none", warmup_ratio=0.1, system_prompt="Solve it with code.")  # short: fast on CPU
    base.update(kw)
    return SFTConfig(**base)


def _state(path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()


def test_config_rejects_unknown_fields():
    with pytest.raises(ValidationError):
        SFTConfig(learnig_rate=1e-4)


def test_loss_falls_on_fixed_seed(tiny, tmp_path):
    res = train_sft(tiny, _records(), _cfg(epochs=5, warmup_ratio=0.0), tmp_path / "run")
    assert res.steps == 10  # 8 records / (2 x 2) = 2 steps per epoch
    assert res.loss_steps[0] == 1 and res.loss_steps[-1] == 10
    assert res.losses[-1] < 0.85 * res.losses[0], res.losses
    saved = TrainResult.model_validate_json((tmp_path / "run" / "train_result.json").read_text())
    assert saved == res
    assert (Path(res.model_dir) / "tokenizer_config.json").exists()
    # A finished run is returned as is, without training again.
    again = train_sft(tiny, _records(), _cfg(epochs=5, warmup_ratio=0.0), tmp_path / "run")
    assert again == res


def test_lora_merges_into_a_plain_loadable_model(tiny, tmp_path):
    res = train_sft(tiny, _records(), _cfg(lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0), tmp_path / "lora")
    final = Path(res.model_dir)
    assert not (final / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).eval()
    base = _state(tiny)
    changed = [k for k, v in merged.state_dict().items() if k in base and not torch.equal(v, base[k])]
    assert changed, "merging the adapter changed no weight"
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32), tmp_path / "lora" / "adapter"
    ).eval()
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-4)


class _Crash(TrainerCallback):
    """Simulates a kill right after step ``at`` (its checkpoint, if due, is not written)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated crash")


def test_resume_after_interruption_matches_uninterrupted_run(tiny, tmp_path):
    cfg = _cfg(epochs=3)
    full = train_sft(tiny, _records(), cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_sft(tiny, _records(), cfg, tmp_path / "cut", callbacks=[_Crash(at=3)])
    assert not (tmp_path / "cut" / "train_result.json").exists()
    assert (tmp_path / "cut" / "checkpoint-2").exists() and not (tmp_path / "cut" / "checkpoint-3").exists()
    resumed = train_sft(tiny, _records(), cfg, tmp_path / "cut", resume=True)
    assert resumed.resumed_from == "checkpoint-2"
    assert resumed.steps == full.steps == 6
    assert resumed.loss_steps == full.loss_steps
    assert resumed.losses == pytest.approx(full.losses, rel=1e-4)
    # Token counts run on across the resume (TRL's own restart from zero), in the log and in the result.
    assert resumed.tokens_seen == full.tokens_seen

    def logged(d):
        history = json.loads((d / "trainer_state.json").read_text())["log_history"]
        return [(e["num_tokens"], e["num_trained_tokens"]) for e in history if "num_tokens" in e]

    assert logged(tmp_path / "cut") == logged(tmp_path / "full")
    a, b = _state(full.model_dir), _state(resumed.model_dir)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_resume_refuses_other_settings_or_data(tiny, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_sft(tiny, _records(), _cfg(), tmp_path / "r", callbacks=[_Crash(at=3)])
    with pytest.raises(ValueError, match=r"other settings \(learning_rate: .* -> 0\.001\)"):  # names the field
        train_sft(tiny, _records(), _cfg(learning_rate=1e-3), tmp_path / "r")
    with pytest.raises(ValueError, match="other training data"):
        train_sft(tiny, _records(6), _cfg(), tmp_path / "r")
    with pytest.raises(FileExistsError, match="checkpoint-2"):
        train_sft(tiny, _records(), _cfg(), tmp_path / "r", resume=False)


def test_truncation_drops_examples_without_trained_tokens(tiny, tmp_path):
    from score_distill.training.sft import tokenize_records

    tok = AutoTokenizer.from_pretrained(tiny)
    rows, stats = tokenize_records(tok, _records(2), _cfg(max_length=40, system_prompt=None))
    assert stats["n_truncated"] == 2 and stats["n_dropped"] == 2 and rows == []  # system prompt fills 40 tokens
    with pytest.raises(NoTrainedToken, match="no training example"):
        train_sft(tiny, _records(2), _cfg(max_length=40, system_prompt=None), tmp_path / "x")
    # The pipeline turns it into a configuration error that names the field to change.
    from score_distill.config import ConfigError, load_config
    from score_distill.pipeline import Pipeline

    pipe = Pipeline(load_config(preset="tiny"), tmp_path / "run", preset="tiny")
    with pytest.raises(ConfigError, match=r"score_sft\.sft\.max_length=40"):
        pipe.train_sft("score_sft", str(tiny), _records(2), _cfg(max_length=40, system_prompt=None))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_entry_point_two_cpu_processes_ddp(tiny, tmp_path):
    recs = tmp_path / "recs.jsonl"
    write_jsonl(recs, _records())
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"), "--main_process_port", str(_free_port()),
        "-m", "score_distill.training.sft_entry", "--records", str(recs), "--model", str(tiny), "--out", str(out),
        "--config", json.dumps({"epochs": 2, "batch_size": 2, "save_steps": 2, "learning_rate": 3e-3,
                                "report_to": "none", "system_prompt": "Solve it."}),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    result = TrainResult.model_validate_json(p.stdout.strip().splitlines()[-1])
    # Two processes x batch 2 = 4 records per step: 2 steps per epoch (one process would take 4).
    assert result.steps == 4
    AutoModelForCausalLM.from_pretrained(result.model_dir)


def test_entry_point_names_bad_line(tiny, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n{not json\n")
    p = subprocess.run(
        [sys.executable, "-m", "score_distill.training.sft_entry", "--records", str(bad), "--model", str(tiny),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert p.returncode == 2
    assert f"{bad}:2" in p.stderr


def test_malformed_student_steps_are_context_not_training_data(tiny):
    """A student step the parser repaired (here: no code block, re-rendered with an empty one) stays in
    the conversation but carries no loss; clean student steps and teacher steps are trained."""
    from score_distill.training.chat_tokenize import trained_text
    from score_distill.training.sft import tokenize_records

    tok = AutoTokenizer.from_pretrained(tiny)
    traj = Trajectory(
        task=Task(id="m", question="What is 3 + 4?", answer="7"),
        steps=[
            Step(kind="plan", thought="PLANSTEP add them", origin="student"),
            Step(thought="BROKENSTEP I think it is 8", code="", origin="student", format_errors=["no code block"],
                 observation="Error: no code found."),
            Step(thought="TEACHERSTEP compute it", code="final_answer_print(3 + 4)", origin="teacher",
                 observation="7", final_answer="7"),
        ],
    )
    (row,), stats = tokenize_records(tok, [traj], _cfg())
    assert stats["n_untrained_steps"] == 1
    enc = {"input_ids": row["input_ids"], "assistant_mask": [int(t != -100) for t in row["labels"]]}
    trained = "".join(trained_text(tok, enc))
    whole = tok.decode(row["input_ids"])
    assert "BROKENSTEP" in whole and "BROKENSTEP" not in trained
    assert "PLANSTEP" in trained and "TEACHERSTEP" in trained
    (row_all,), _ = tokenize_records(tok, [traj], _cfg(train_malformed_student_steps=True))
    assert row_all["input_ids"] == row["input_ids"]
    assert sum(t != -100 for t in row_all["labels"]) > sum(t != -100 for t in row["labels"])
    # A teacher step with a repaired format (e.g. an imported reference trajectory) is still trained.
    teacher_only = traj.model_copy(deep=True)
    for s in teacher_only.steps:
        s.origin = "teacher"
    (row_t,), _ = tokenize_records(tok, [teacher_only], _cfg())
    assert row_t["labels"] == row_all["labels"]


def test_records_of_malformed_student_steps_only_leave_the_model_unchanged(tiny, tmp_path):
    """Nothing to learn is not a configuration error: the stage keeps its base model and says why."""
    from score_distill.config import load_config
    from score_distill.pipeline import Pipeline
    from score_distill.training.sft import NothingToTrain

    broken = [Trajectory(task=Task(id=f"b{i}", question="What is 1 + 1?", answer="2"),
                         steps=[Step(kind="plan", thought="", format_errors=["empty plan"]),
                                Step(thought="two", format_errors=["no code block"])]) for i in range(2)]
    with pytest.raises(NothingToTrain, match="format errors"):
        train_sft(tiny, broken, _cfg(), tmp_path / "direct")
    pipe = Pipeline(load_config(preset="tiny"), tmp_path / "run", preset="tiny")
    info = pipe.train_sft("score_sft", str(tiny), broken, _cfg())
    assert info["model"] == str(tiny) and info["trained"] is False
    assert not (tmp_path / "run" / "score_sft" / "train" / "model").exists()


def test_a_finished_run_keeps_its_final_state_not_its_checkpoints(tiny, tmp_path):
    from score_distill.report.compute import sft_compute

    pruned = train_sft(tiny, _records(), _cfg(epochs=3), tmp_path / "pruned")
    kept = train_sft(tiny, _records(), _cfg(epochs=3, keep_finished_checkpoints=True), tmp_path / "kept")
    assert not list((tmp_path / "pruned").glob("checkpoint-*"))
    assert (tmp_path / "kept" / "checkpoint-6" / "optimizer.pt").exists()
    assert (tmp_path / "pruned" / "trainer_state.json").exists() and Path(pruned.model_dir).exists()
    # The compute record reads the same counts from the final state as from the last checkpoint.
    assert sft_compute(tmp_path / "pruned") == sft_compute(tmp_path / "kept")
    assert sft_compute(tmp_path / "pruned")["sft_tokens"] == pruned.tokens_seen == kept.tokens_seen
    # A run killed while pruning: the same call finishes the pruning and returns the result.
    (tmp_path / "pruned" / "checkpoint-6").mkdir()
    assert train_sft(tiny, _records(), _cfg(epochs=3), tmp_path / "pruned").steps == 6
    assert not (tmp_path / "pruned" / "checkpoint-6").exists()
