"""Where a Trainer's output goes: its log dicts to the ``score_distill.trainer`` logger, its steps to the stage's bar.

transformers' Trainer adds ``PrinterCallback`` (``print()`` of every log dict to stdout) when ``disable_tqdm`` is
set, and a tqdm ``ProgressCallback`` otherwise. :func:`route_trainer_output` takes both off a built trainer and
adds :class:`LogAndBar`: the dicts then reach ``RUN/run.log`` through logging (and stderr too with ``--verbose``,
see :mod:`score_distill.utils.console`), and the optimizer steps count up on the stage's one rich bar.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from score_distill.utils.progress import progress_bar

log = logging.getLogger("score_distill.trainer")


class LogAndBar(TrainerCallback):
    """Logs every log dict (INFO, ``score_distill.trainer``) and advances a bar per optimizer step."""

    def __init__(self) -> None:
        self._cm: Any = None
        self._bar: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_local_process_zero and state.max_steps > 0:
            stage = Path(args.output_dir).parent.name or "training"  # RUN/<stage>/train
            # global_step > 0: resumed from a checkpoint
            self._cm = progress_bar(state.max_steps, f"{stage} optimizer steps", done=state.global_step)
            self._bar = self._cm.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.advance(1)

    def on_train_end(self, args, state, control, **kwargs):
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
        self._cm = self._bar = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            logs = {k: v for k, v in logs.items() if k != "total_flos"}
            log.info("step %d: %s", state.global_step, logs)


def route_trainer_output(trainer: Any) -> Any:
    """Replace the printing and tqdm callbacks of ``trainer`` by one :class:`LogAndBar`; returns ``trainer``."""
    for cb in (PrinterCallback, ProgressCallback, LogAndBar):
        while trainer.pop_callback(cb) is not None:
            pass
    trainer.add_callback(LogAndBar())
    return trainer
