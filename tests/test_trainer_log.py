"""The trainers our code builds print nothing: their log dicts go to ``RUN/run.log`` (and to stderr with --verbose)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer, PrinterCallback, ProgressCallback

from score_distill.models.tiny import build_tiny_model
from score_distill.training.sft import SFTConfig, build_trainer, tokenize_records, train_sft
from score_distill.training.trainer_log import LogAndBar, route_trainer_output
from score_distill.utils import console

RECORDS = [{"messages": [{"role": "user", "content": f"What is {i} + 2?"},
                         {"role": "assistant", "content": f"<code>\nfinal_answer_print({i} + 2)\n</code>"}]}
           for i in range(4)]


def _cfg(**kw) -> SFTConfig:
    return SFTConfig(**{"max_steps": 2, "batch_size": 2, "max_length": 128, "report_to": "none",
                        "learning_rate": 1e-3, **kw})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("trainer_log") / "tiny", seed=0)


def test_built_trainer_has_our_log_callback_and_no_printer(tiny, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny)
    rows, _ = tokenize_records(tok, RECORDS, _cfg())
    trainer = build_trainer(str(tiny), _cfg(), tmp_path, tok, rows)

    def kinds():
        cbs = trainer.callback_handler.callbacks
        return (sum(isinstance(cb, PrinterCallback | ProgressCallback) for cb in cbs),
                sum(isinstance(cb, LogAndBar) for cb in cbs))

    assert kinds() == (0, 1)
    trainer.add_callback(ProgressCallback)  # what the Trainer adds when tqdm is on
    trainer.add_callback(PrinterCallback)
    assert kinds() == (2, 1)
    route_trainer_output(trainer)
    assert kinds() == (0, 1)


def test_trainer_dicts_reach_the_run_log_not_the_terminal(tiny, tmp_path, capfd):
    run = tmp_path / "run"
    try:
        console.configure(run, verbose=False)
        res = train_sft(tiny, RECORDS, _cfg(), run / "bc_init" / "train")
    finally:
        console.reset()
    assert res.steps == 2
    cap = capfd.readouterr()
    log = (run / "run.log").read_text()
    assert "score_distill.trainer" in log and "'loss'" in log and "step 2:" in log
    assert "'loss'" not in cap.out + cap.err

    try:
        console.configure(run, verbose=True)
        train_sft(tiny, RECORDS, _cfg(), run / "score_sft" / "train")
    finally:
        console.reset()
    cap = capfd.readouterr()
    assert "score_distill.trainer" in cap.err and "'loss'" in cap.err  # --verbose shows them
    assert "'loss'" not in cap.out  # stdout carries only the final table
    assert (run / "run.log").read_text().count("score_distill.trainer") > log.count("score_distill.trainer")
