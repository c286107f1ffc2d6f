"""Which exceptions are the user's to fix (shown as one line) rather than bugs (shown with a traceback)."""

from __future__ import annotations

from score_distill.config import ConfigError
from score_distill.utils.jsonl import DataError


class EndpointError(RuntimeError):
    """An endpoint (teacher, judge, search) that cannot be reached or refuses us; the message names the URL."""


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError, EndpointError, FileNotFoundError)


def describe(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"{e.filename}: file not found"
    return str(e)
