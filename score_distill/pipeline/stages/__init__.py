"""The pipeline's order, in one table. Each stage is the module of its name in this folder, with one entry point
``run(ctx, cfg) -> info``: it reads its inputs from the run directory (``ctx.run``), writes its outputs to
``RUN/<stage>/`` and returns what its ``stage.json`` records. A stage whose ``enabled`` is false for the
configuration is marked skipped, and owed once switched on. A finished stage whose ``stale`` says its outputs
no longer cover the run (the eval stage, once another arm is trained) runs again, reusing what it wrote.

A new comparison arm is one module here, one row below and one switch in ``CompareConfig``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any


def always(cfg: Any) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    name: str
    policy: bool = False  # it trains a policy, scored by the eval stage under the stage's name
    enabled: Callable[[Any], bool] = always
    stale: Callable[[Any, Any], bool] | None = None  # (ctx, cfg) -> done, but owed again
    when_off: str = ""  # the result line of a run that switches the stage off, where silence would mislead


    def module(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.name}")


STAGES: tuple[Stage, ...] = (
    Stage("tasks"),                                    # training and held-out tasks, de-duplicated
    Stage("bc_init", policy=True),                     # teacher demonstrations -> SFT (cold start)
    Stage("mps"),                                      # the BC-init student solves, the teacher corrects
    Stage("split"),                                    # MPS records -> SFT half, RL half
    Stage("score_sft", policy=True),                   # BC init + SFT on corrected trajectories
    Stage("bc_baseline", policy=True, enabled=lambda c: c.bc_baseline.enabled,
          when_off="off in this run; `score-distill compare` trains it beside SCoRe, compute-matched"),
    Stage("bc_equal_budget", policy=True, enabled=lambda c: c.compare.bc_equal_budget),
    Stage("bc_continued", policy=True, enabled=lambda c: c.compare.bc_continued),
    Stage("score_rl", policy=True),                    # GRPO from verified prefixes, key-step reward
    Stage("rl_sparse_reward", policy=True, enabled=lambda c: c.compare.rl_sparse_reward),
    Stage("rl_long_horizon", policy=True, enabled=lambda c: c.compare.rl_long_horizon),
    Stage("eval", stale=lambda ctx, cfg: _eval_stale(ctx, cfg)),  # every policy on the held-out tasks
    Stage("report", stale=lambda ctx, cfg: _report_stale(ctx)),  # summary.json, report.html
)
STAGE_NAMES: list[str] = [s.name for s in STAGES]
POLICY_STAGES: list[str] = [s.name for s in STAGES if s.policy]


def _eval_stale(ctx: Any, cfg: Any) -> bool:
    from score_distill.pipeline.stages.eval import missing_policies

    return bool(missing_policies(ctx, cfg))


def _report_stale(ctx: Any) -> bool:
    summary, results = ctx.run.path / "summary.json", ctx.stage_dir("eval") / "results.json"
    return results.exists() and (not summary.exists() or summary.stat().st_mtime < results.stat().st_mtime)


def stage(name: str) -> Stage:
    return STAGES[STAGE_NAMES.index(name)]
