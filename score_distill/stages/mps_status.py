"""Typed outcomes of MPS: the final status of a task, and why a task failed.

A failure is ``Failure(stage, cause, detail)``: where it failed (``locate``, ``correct``, ``generation``), a
countable cause (``timeout``, ``bad format``, ``step index out of range``...) and the full reason text. Records
keep it as ``meta["failure_record"]`` beside the readable ``meta["failure"]`` (the same text as ``detail``);
records written before the typed record existed, or whose text was edited since, are read by parsing their
text, here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class MPSStatus(StrEnum):
    SOLVED_ALONE = "solved_alone"
    CORRECTED = "corrected"
    HARD_TO_TEACH = "hard_to_teach"  # the teacher could not locate an error
    EXHAUSTED = "exhausted"  # still wrong after the last allowed correction
    FAILED = "failed"  # the teacher failed (after retries); see the failure record


# Transport causes worth a retry later (the endpoint was down or overloaded), as OpenAIPolicy names them.
TRANSIENT_CAUSES = ("timeout", "connection", "server_error", "rate_limit")
_TRANSPORT = ("request failed", "generation failed")
_DETAIL = re.compile(r"\s*\(.*|'.*?'|\s-?\d+(?=\s|$)")


@dataclass(frozen=True)
class Failure:
    stage: str
    cause: str
    detail: str = ""

    @property
    def transient(self) -> bool:
        """Only the transport failed (the teacher could not be reached): worth redoing on a rerun."""
        return self.cause in TRANSIENT_CAUSES

    def label(self) -> str:
        """The countable form, e.g. ``locate: timeout``."""
        return f"{self.stage}: {self.cause}" if self.stage else self.cause

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def parse(cls, reason: str) -> Failure:
        """From a reason text: "locate: request failed: timeout: timed out after 60s" -> (locate, timeout, ...);
        "locate: step index 9 out of range (1..4)" -> (locate, step index out of range, ...);
        "generation failed: timeout: ..." -> (generation, timeout, ...). Numbers, quoted values and
        parentheses are dropped from the cause so the same cause is counted once, whatever the task."""
        reason = str(reason)
        parts = [p.strip() for p in reason.split(":")]
        if parts[0] in _TRANSPORT and len(parts) >= 2:
            return cls("generation", parts[1], reason)
        if len(parts) >= 3 and parts[1] in _TRANSPORT:
            return cls(parts[0], parts[2], reason)
        stage = _DETAIL.sub("", parts[0]).strip()
        cause = _DETAIL.sub("", parts[1]).strip() if len(parts) > 1 else ""
        return cls(stage, cause, reason) if cause else cls("", stage, reason)

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Failure | None:
        """The failure of a record's ``meta``: the typed record, or the old text parsed; None if it did not fail."""
        rec = meta.get("failure_record")
        if isinstance(rec, dict) and rec.get("detail") == meta.get("failure", rec.get("detail")):
            return cls(**rec)
        if meta.get("failure"):
            return cls.parse(meta["failure"])
        return None
