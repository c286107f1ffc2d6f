"""Split MPS output by task into the SCoRe-SFT and SCoRe-RL halves (no task in both).

Shares are taken within each suite (``meta["suite_key"]``: suite and horizon): a coin flip per task
left the default run's 28 search tasks 11 / 16 and its BC share 37 of 96 instead of 48. Within a
suite, tasks are ranked by a seeded hash of their id, so a rerun gives the same split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from score_distill.stages.mps import CORRECTED, SOLVED_ALONE
from score_distill.tasks.task_set import by_suite
from score_distill.trajectory import Task, Trajectory


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sft_share: float = Field(0.5, ge=0.0, le=1.0, description="Share of each suite's MPS tasks that go to SCoRe-SFT.")
    keep_solved_alone: float = Field(
        0.5, ge=0.0, le=1.0, description="Probability a zero-correction trajectory is kept for SFT."
    )


def unit_hash(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from the parts (seeded, order-independent of the run)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def take_share(tasks: Sequence[Task], share: float, seed: int, salt: str) -> set[str]:
    """Ids of the tasks in the first part: ``share`` of each suite, the lowest-hash tasks of it.

    A suite's count is rounded up or down at random (seeded), so small suites get ``share`` on average
    instead of always rounding the same way.
    """
    chosen: set[str] = set()
    for key, group in sorted(by_suite(list({t.id: t for t in tasks}.values())).items()):
        k = math.floor(share * len(group) + unit_hash(seed, salt, "round", key))
        ranked = sorted(group, key=lambda t: unit_hash(seed, salt, t.id))
        chosen.update(t.id for t in ranked[:k])
    return chosen


def split_mps(records: list[Trajectory], cfg: SplitConfig, seed: int) -> tuple[list[Trajectory], list[Trajectory]]:
    """Returns (sft_training_trajectories, rl_half_records).

    The SFT list holds only trajectories worth imitating: corrected ones, and solved-alone ones with
    probability ``keep_solved_alone``. The RL half holds every record of its tasks; the RL stage
    decides what to make of each (see ``score_distill.rl.items``).
    """
    sft, rl = [], []
    sft_half = take_share([r.task for r in records], cfg.sft_share, seed, "split")
    for r in records:
        if r.task.id in sft_half:
            status = r.meta.get("mps_status")
            if status == CORRECTED and r.correct:
                sft.append(r)
            elif status == SOLVED_ALONE and r.correct and unit_hash(seed, "keep", r.task.id) < cfg.keep_solved_alone:
                sft.append(r)
        else:
            rl.append(r)
    return sft, rl
