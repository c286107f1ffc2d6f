"""One interface for every teacher (oracle, LLM endpoint, rollout-verified locator).

A teacher can (a) solve tasks as full trajectories, (b) locate the first critical error of a
student trajectory, (c) write one replacement step for it. All methods are batched, because an
LLM teacher behind vLLM is only fast with many requests in flight. Every call's tokens and time
are added to ``usage`` so teacher cost can be compared across methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from score_distill.trajectory import Step, Task, Trajectory, Usage


@dataclass
class Verdict:
    """The teacher's review of one trajectory.

    ``first_error_step`` is 0-based into ``trajectory.steps`` (0 = the plan). It is None when the
    trajectory is correct, or when the teacher cannot locate an error (``hard_to_teach``).
    ``failure`` is set when the teacher could not give a valid answer after its retries (the
    reason, e.g. "timeout", "invalid JSON", "step index 9 out of range"): the caller records the
    task as failed with that reason, it never silently drops it.
    """

    is_correct: bool
    first_error_step: int | None = None
    analysis: str = ""
    suggestion: str = ""
    usage: Usage = field(default_factory=Usage)
    failure: str | None = None

    @property
    def hard_to_teach(self) -> bool:
        return not self.is_correct and self.first_error_step is None and self.failure is None


@dataclass
class StepProposal:
    """A replacement step written by the teacher (origin="teacher", not executed yet)."""

    step: Step | None
    usage: Usage = field(default_factory=Usage)
    failure: str | None = None


@runtime_checkable
class Teacher(Protocol):
    name: str
    usage: Usage  # cumulative over every call

    def solve(self, tasks: list[Task]) -> list[Trajectory]:
        """Full trajectories in the agent format, executed for real in the sandbox (origin=teacher).

        Scored (``outcome``/``score`` set); rejection sampling is the caller's job.
        """
        ...

    def locate(self, trajectories: list[Trajectory]) -> list[Verdict]:
        """First critical error of each trajectory (wrong or unfinished ones; correct ones -> is_correct)."""
        ...

    def correct(self, trajectories: list[Trajectory], verdicts: list[Verdict]) -> list[StepProposal]:
        """One replacement for ``steps[verdict.first_error_step]`` given the verified prefix before it.

        A plan (``kind="plan"``) when the error is at step 0, else a thought+code action. The step must
        read as a natural step (no talk of correcting a mistake) and must not hard-code the reference
        answer as a literal it did not compute.
        """
        ...
