"""The whole SCoRe run: the stages of :mod:`score_distill.pipeline.stages`, in the order of its ``STAGES`` table.

A run lives in one directory (:class:`~score_distill.pipeline.run_dir.RunDir`)::

    RUN/manifest.json, RUN/config.yaml     how the run was made (every command that worked in the folder)
    RUN/<stage>/stage.json                 written last: the stage is done (seconds, outputs, compute)
    RUN/tasks/{train,eval,bc,mps}.jsonl
    RUN/bc_init/, RUN/bc_baseline/         teacher_trajectories.jsonl, train/model/
    RUN/mps/trajectories.jsonl, stats.json
    RUN/split/{sft,rl}.jsonl
    RUN/score_sft/, RUN/score_rl/          train/model/; items.jsonl, log.jsonl, model/
    RUN/<arm>/                             the comparison's arms when switched on (compare.*)
    RUN/eval/<policy>/<suite>/seed<k>.jsonl, RUN/eval/results.json
    RUN/summary.json, RUN/report.html

Every stage is idempotent: a finished stage (its ``stage.json``) is skipped; an interrupted one resumes from
what it durably wrote (teacher trajectories and MPS chunks are append-only, trainer checkpoints resume,
evaluation files are written whole). ``--from``/``--to`` rerun a range: the old outputs of rerun stages are
moved to ``RUN/.trash/`` rather than deleted.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from score_distill.config import ConfigError, RunConfig
from score_distill.pipeline.context import RunContext
from score_distill.pipeline.run_dir import DISABLED, RunDir, config_changes
from score_distill.pipeline.stages import STAGE_NAMES, STAGES
from score_distill.pipeline.summary import summary
from score_distill.utils.console import detail, result, stage_done, stage_start
from score_distill.utils.malloc import release_free_memory
from score_distill.utils.peak_memory import peak_rss_gb, reset_peak

console = detail  # RUN/run.log unless --verbose (utils/console.py)

__all__ = ["STAGES", "STAGE_NAMES", "Pipeline", "RunContext", "RunDir", "config_changes", "run_pipeline"]


def run_stages(ctx: RunContext, from_stage: str | None = None, to_stage: str | None = None, *,
               only: list[str] | None = None) -> dict[str, Any]:
    """Run the stages from ``from_stage`` to ``to_stage`` (all by default; with ``only``, those of them),
    skipping finished ones."""
    for s in (from_stage, to_stage, *(only or [])):
        if s is not None and s not in STAGE_NAMES:
            raise ConfigError(f"unknown stage '{s}' (stages: {', '.join(STAGE_NAMES)})")
    i0 = STAGE_NAMES.index(from_stage) if from_stage else 0
    i1 = STAGE_NAMES.index(to_stage) if to_stage else len(STAGES) - 1
    todo = [s for s in STAGES[i0 : i1 + 1] if only is None or s.name in only]
    cfg, run = ctx.cfg, ctx.run
    run.write_manifest(cfg, ctx.preset)
    if from_stage:
        run.trash([s.name for s in todo])
    pending = [s for s in todo if not run.done(s.name, s.enabled(cfg))]
    if cfg.teacher.kind == "llm" and any(s.enabled(cfg) for s in pending):
        ctx.res.check_teacher_endpoint()
    try:
        for stage in todo:
            enabled = stage.enabled(cfg)
            if run.done(stage.name, enabled) and not (stage.stale and stage.stale(ctx, cfg)):
                result(f"- {stage.name}: done, skipped")
                continue
            if not enabled:
                run.mark_done(stage.name, 0.0, model=None, skipped=DISABLED)
                if stage.when_off:
                    result(f"{stage.name}: {stage.when_off}")
                continue
            stage_start(stage.name)
            measured = reset_peak()
            t0 = time.perf_counter()
            info = stage.module().run(ctx, cfg) or {}
            if measured:
                info["peak_rss_gb"] = peak_rss_gb()  # this process only: sandboxes are processes of their own
            run.mark_done(stage.name, time.perf_counter() - t0, **info)
            stage_done(stage.name, info, run.path)
            gc.collect()
            release_free_memory()  # a trainer's freed activations, kept mapped while it ran (utils/malloc.py)
    finally:
        ctx.res.close()
    return summary(ctx)


class Pipeline:
    """A run directory with its configuration: ``run()`` runs the stages; the attributes are the parts a
    caller may use (``run``: the directory, ``res``: the shared resources, ``ctx``: both, as stages get them)."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, preset: str = "default"):
        self.ctx = RunContext.open(cfg, run_dir, preset)
        self.cfg, self.run_dir, self.res, self.preset = cfg, self.ctx.run, self.ctx.res, preset
        self.dir = self.run_dir.path

    def run(self, from_stage: str | None = None, to_stage: str | None = None, *,
            only: list[str] | None = None) -> dict[str, Any]:
        return run_stages(self.ctx, from_stage, to_stage, only=only)

    def summary(self) -> dict[str, Any]:
        return summary(self.ctx)

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir.stage_dir(stage)

    def stage_state(self, stage: str) -> dict[str, Any] | None:
        return self.run_dir.state(stage)

    def train_sft(self, stage: str, base_model: str, records: list, sft_cfg: Any) -> dict[str, Any]:
        from score_distill.pipeline.sft import train_sft

        return train_sft(self.ctx, stage, base_model, records, sft_cfg)

    def close(self) -> None:
        self.res.close()


def run_pipeline(cfg: RunConfig, run_dir: Path, *, preset: str = "default", from_stage: str | None = None,
                 to_stage: str | None = None) -> dict[str, Any]:
    return Pipeline(cfg, run_dir, preset=preset).run(from_stage, to_stage)
