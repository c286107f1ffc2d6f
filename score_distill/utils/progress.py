"""Progress bars for long loops (rich), silent when not on a terminal or when asked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _Bar:
    def __init__(self, progress: Progress | None, task_id: int | None):
        self._p, self._t = progress, task_id

    def advance(self, n: int = 1) -> None:
        if self._p is not None and self._t is not None:
            self._p.advance(self._t, n)


def progress_enabled() -> bool:
    """Bars on a terminal, or when SCORE_DISTILL_PROGRESS=1; never when SCORE_DISTILL_PROGRESS=0."""
    if os.environ.get("SCORE_DISTILL_PROGRESS", "").lower() in {"0", "off", "false"}:
        return False
    return sys.stderr.isatty() or os.environ.get("SCORE_DISTILL_PROGRESS", "").lower() in {"1", "on", "true"}


@contextmanager
def progress_bar(total: int, label: str | None) -> Iterator[_Bar]:
    if not label or not progress_enabled() or total <= 0:
        yield _Bar(None, None)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as p:
        yield _Bar(p, p.add_task(label, total=total))
