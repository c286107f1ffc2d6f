"""The pipeline's order, in one table. Each stage is the module of its name in this folder, with one entry point
``run(ctx, cfg) -> info``: it reads its inputs from the run directory (``ctx.run``), writes its outputs to
``RUN/<stage>/`` and returns what its ``stage.json`` records. A stage whose ``enabled`` is false for the
configuration is marked skipped, and owed once switched on.

A new comparison arm is one module here, one row below and one switch in ``CompareConfig``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any


def _always(cfg: Any) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    name: str
    policy: bool = False  # it trains a policy, scored by the eval stage under the stage's name
    enabled: Callable[[Any], bool] = _always

    def module(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.name}")


STAGES: tuple[Stage, ...] = (
    Stage("tasks"),                                    # training and held-out tasks, de-duplicated
    Stage("bc_init", policy=True),                     # teacher demonstrations -> SFT (cold start)
    Stage("mps"),                                      # the BC-init student solves, the teacher corrects
    Stage("split"),                                    # MPS records -> SFT half, RL half
    Stage("score_sft", policy=True),                   # BC init + SFT on corrected trajectories
    Stage("bc_baseline", policy=True, enabled=lambda c: c.bc_baseline.enabled),
    Stage("bc_equal_budget", policy=True, enabled=lambda c: c.compare.bc_equal_budget),
    Stage("bc_continued", policy=True, enabled=lambda c: c.compare.bc_continued),
    Stage("score_rl", policy=True),                    # GRPO from verified prefixes, key-step reward
    Stage("rl_sparse_reward", policy=True, enabled=lambda c: c.compare.rl_sparse_reward),
    Stage("rl_long_horizon", policy=True, enabled=lambda c: c.compare.rl_long_horizon),
    Stage("eval"),                                     # every policy on the held-out tasks
    Stage("report"),                                   # summary.json, report.html
)
STAGE_NAMES: list[str] = [s.name for s in STAGES]
POLICY_STAGES: list[str] = [s.name for s in STAGES if s.policy]


def stage(name: str) -> Stage:
    return STAGES[STAGE_NAMES.index(name)]
