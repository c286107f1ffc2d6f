"""Split MPS output by task into the SCoRe-SFT and SCoRe-RL halves (no task in both).

Decisions are seeded and per task (a hash of seed and task id), so adding tasks to a run never
moves an existing task to the other half, and a rerun gives the same split.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from score_distill.stages.mps import CORRECTED, SOLVED_ALONE
from score_distill.trajectory import Trajectory


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sft_share: float = Field(0.5, ge=0.0, le=1.0, description="Share of MPS tasks that go to SCoRe-SFT.")
    keep_solved_alone: float = Field(
        0.5, ge=0.0, le=1.0, description="Probability a zero-correction trajectory is kept for SFT."
    )


def unit_hash(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from the parts (seeded, order-independent of the run)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_mps(records: list[Trajectory], cfg: SplitConfig, seed: int) -> tuple[list[Trajectory], list[Trajectory]]:
    """Returns (sft_training_trajectories, rl_half_records).

    The SFT list holds only trajectories worth imitating: corrected ones, and solved-alone ones with
    probability ``keep_solved_alone``. The RL half holds every record of its tasks; the RL stage
    decides what to make of each (see ``score_distill.rl.items``).
    """
    sft, rl = [], []
    for r in records:
        if unit_hash(seed, "split", r.task.id) < cfg.sft_share:
            status = r.meta.get("mps_status")
            if status == CORRECTED and r.correct:
                sft.append(r)
            elif status == SOLVED_ALONE and r.correct and unit_hash(seed, "keep", r.task.id) < cfg.keep_solved_alone:
                sft.append(r)
        else:
            rl.append(r)
    return sft, rl
