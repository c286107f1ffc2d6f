"""What a run shows on the terminal, and what goes to ``RUN/run.log`` instead.

The terminal gets one progress bar per stage (episodes, optimizer steps, RL updates) and one result line per
stage. Everything else is detail and goes to the run's log file: the pipeline's own chatter (``detail``),
library warnings (the ``warnings`` module, via :func:`logging.captureWarnings`), the transformers / datasets /
TRL loggers, Hugging Face's weight-loading bars, and the Trainer's per-step dictionaries (which
:mod:`score_distill.training.trainer_log` logs). ``verbose=True`` (``score-distill run --verbose``) shows all of
it on stderr as well; the log file gets it either way.
Notes that need the user (printed in yellow or red) reach the terminal in both modes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.text import Text

LOG_FILE = "run.log"
log = logging.getLogger("score_distill")


class _Target:
    """A file object whose destination can change after consoles that write to it were made (module globals)."""

    def __init__(self) -> None:
        self.stream: IO[str] | None = None

    def _out(self) -> IO[str]:
        return self.stream or sys.stderr

    def write(self, s: str) -> int:
        return self._out().write(s)

    def flush(self) -> None:
        self._out().flush()

    def isatty(self) -> bool:
        return self._out().isatty()


class _DetailConsole(Console):
    def print(self, *objects: Any, **kwargs: Any) -> None:  # noqa: A003 - rich's name
        super().print(*objects, **kwargs)
        first = objects[0] if objects else ""
        if _TARGET.stream is not None and isinstance(first, str) and first.startswith(("[yellow]", "[red]")):
            terminal.print(*objects, **kwargs)  # a note the user must see, not detail


_TARGET = _Target()
# Results and bars: stderr, so stdout carries only the final table.
terminal = Console(stderr=True)
# The pipeline's running commentary: stderr until configure() points it at the run's log.
detail: Console = _DetailConsole(file=_TARGET, soft_wrap=True)  # type: ignore[arg-type]
_state: dict[str, Any] = {"handlers": [], "verbose": True, "log": None}


def _quiet_libraries(verbose: bool) -> None:
    """Route the Hugging Face libraries' loggers into logging's root (our handlers) and, unless verbose,
    switch off their progress bars."""
    try:
        import transformers.utils.logging as tlog
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    tlog.disable_default_handler()
    tlog.enable_propagation()
    tlog.set_verbosity_warning()
    try:
        import datasets.utils.logging as dlog

        dlog.enable_propagation()
        for h in list(logging.getLogger("datasets").handlers):
            logging.getLogger("datasets").removeHandler(h)
    except ImportError:  # pragma: no cover
        dlog = None
    import huggingface_hub.utils as hub

    if verbose:
        tlog.enable_progress_bar()
        hub.enable_progress_bars()
        if dlog is not None:
            dlog.enable_progress_bar()
    else:
        tlog.disable_progress_bar()
        hub.disable_progress_bars()
        if dlog is not None:
            dlog.disable_progress_bar()


def _drop_handlers() -> None:
    """Close what an earlier :func:`configure` attached (its log handlers and the run log's stream)."""
    root = logging.getLogger()
    for h in _state["handlers"]:
        root.removeHandler(h)
        h.close()
    if _state["log"] is not None:
        _state["log"].close()


def configure(run_dir: str | Path, *, verbose: bool = False) -> Path:
    """Send detail, warnings and library logs to ``RUN/run.log`` (and to stderr too when ``verbose``)."""
    path = Path(run_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_handlers()
    root = logging.getLogger()
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [fh]
    if verbose:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers.append(sh)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per HTTP request
    logging.captureWarnings(True)
    _quiet_libraries(verbose)
    stream = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the run
    _state.update(handlers=handlers, verbose=verbose, log=stream)
    _TARGET.stream = None if verbose else stream
    return path


def reset() -> None:
    """Undo :func:`configure` (tests run several pipelines in one process)."""
    from score_distill.utils.progress import end_stage

    end_stage()  # a stage that raised leaves its bars live
    _drop_handlers()
    logging.captureWarnings(False)
    _state.update(handlers=[], verbose=True, log=None)
    _TARGET.stream = None


def result(line: str) -> None:
    """A stage's one-line result: on the terminal, and in the log."""
    terminal.print(Text(line), highlight=False, soft_wrap=True)
    if _TARGET.stream is not None:
        _TARGET.stream.write(line + "\n")


def stage_start(stage: str) -> None:
    from score_distill.utils.progress import begin_stage

    begin_stage(stage)
    detail.rule(f"[bold]{stage}")


def stage_done(stage: str, info: dict[str, Any], run_dir: str | Path) -> None:
    from score_distill.report.stage_lines import stage_line
    from score_distill.utils.progress import end_stage

    end_stage()
    result(stage_line(stage, info, Path(run_dir)))
