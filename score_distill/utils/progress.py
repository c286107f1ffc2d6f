"""Progress bars for long loops (rich), silent when not on a terminal or when asked.

Inside a pipeline stage (:func:`begin_stage` .. :func:`end_stage`, called by ``utils.console``) every bar of the
stage lives in one display, and calls with the same label add to one bar: the episodes of every evaluation job
of a policy count up on one line instead of one line per call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _Bar:
    def __init__(self, progress: Progress | None, task_id: Any, label: str = ""):
        self._p, self._t, self._label = progress, task_id, label

    def advance(self, n: int = 1) -> None:
        if self._p is not None and self._t is not None and n:
            self._p.advance(self._t, n)

    def note(self, text: str) -> None:
        """Show ``text`` after the bar's label (a secondary count, e.g. the rollouts of the current RL update)."""
        if self._p is not None and self._t is not None:
            self._p.update(self._t, description=f"{self._label} {text}".rstrip())


def progress_enabled() -> bool:
    """Bars on a terminal, or when SCORE_DISTILL_PROGRESS=1; never when SCORE_DISTILL_PROGRESS=0."""
    if os.environ.get("SCORE_DISTILL_PROGRESS", "").lower() in {"0", "off", "false"}:
        return False
    return sys.stderr.isatty() or os.environ.get("SCORE_DISTILL_PROGRESS", "").lower() in {"1", "on", "true"}


def _new_progress() -> Progress:
    from score_distill.utils.console import terminal

    # The ETA's speed is taken over the last hour, not rich's 30 s: an RL update can take minutes, and with fewer
    # than two samples in the window rich shows no ETA at all.
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=terminal, transient=False, speed_estimate_period=3600)


def _add(p: Progress, label: str, total: int, done: int) -> Any:
    tid = p.add_task(label, total=total, completed=done)  # done: from a resumed run, not counted in the speed
    p.advance(tid, 0)  # the start is the speed's first sample: the ETA shows from the first unit on
    return tid


_stage: dict[str, Any] = {"name": None, "progress": None, "tasks": {}}


def begin_stage(name: str) -> None:
    end_stage()
    _stage.update(name=name, progress=None, tasks={})


def end_stage() -> None:
    if _stage["progress"] is not None:
        _stage["progress"].stop()
    _stage.update(name=None, progress=None, tasks={})


@contextmanager
def progress_bar(total: int, label: str | None, done: int = 0) -> Iterator[_Bar]:
    """A bar of ``total`` units (``done`` of them finished before, e.g. by the run a resume continues)."""
    if not label or not progress_enabled() or total <= 0:
        yield _Bar(None, None)
        return
    if _stage["name"] is not None:
        if _stage["progress"] is None:
            _stage["progress"] = _new_progress()
            _stage["progress"].start()
        p: Progress = _stage["progress"]
        tid = _stage["tasks"].get(label)
        if tid is None:
            tid = _stage["tasks"][label] = _add(p, label, total, done)
        else:
            p.update(tid, total=(next(t for t in p.tasks if t.id == tid).total or 0) + total, advance=done)
        yield _Bar(p, tid, label)
        return
    with _new_progress() as p:
        yield _Bar(p, _add(p, label, total, done), label)
