"""What a stage's ``run(ctx, cfg)`` receives besides the configuration: the run directory and the resources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from score_distill.config import RunConfig
from score_distill.pipeline.resources import Resources
from score_distill.pipeline.run_dir import RunDir


@dataclass
class RunContext:
    cfg: RunConfig
    run: RunDir
    res: Resources
    preset: str = "default"

    @classmethod
    def open(cls, cfg: RunConfig, run_dir: str | Path, preset: str = "default") -> RunContext:
        return cls(cfg, RunDir(run_dir), Resources(cfg, Path(run_dir)), preset)

    def stage_dir(self, stage: str) -> Path:
        return self.run.stage_dir(stage)
