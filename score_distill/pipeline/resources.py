"""What stages share and build on demand: the sandbox pool, the teacher, the tools, policy loading."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from score_distill.config import ConfigError, RunConfig
from score_distill.models.resolve import resolve_model
from score_distill.trajectory import Task
from score_distill.utils.console import detail

console = detail  # RUN/run.log unless --verbose (utils/console.py)


class Resources:
    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self._pool = None
        self._teacher = None
        self._search = None

    @property
    def pool(self):
        if self._pool is None:
            from score_distill.sandbox import SandboxPool

            self._pool = SandboxPool(self.cfg.sandbox, max_workers=min(8, max(2, os.cpu_count() or 2)))
        return self._pool

    @property
    def teacher(self):
        if self._teacher is None:
            from score_distill.teachers.factory import make_teacher

            self._teacher = make_teacher(self.cfg, self.pool, tools_for=self.tools_for)
        return self._teacher

    def tools_for(self, task: Task) -> dict[str, Callable[..., str]]:
        from score_distill.tasks.registry import tools_for

        if self._search is None and self.cfg.search.kind != "none":
            from score_distill.tasks.search_factory import make_search

            self._search = make_search(self.cfg.search, self.run_dir / "search_cache.jsonl")
        return tools_for(task, search=self._search)

    def check_teacher_endpoint(self) -> None:
        """Fail fast, before any work, when the teacher's endpoint cannot be reached."""
        from score_distill.models.openai_compat import OpenAIPolicy
        from score_distill.user_errors import EndpointError

        tc = self.cfg.teacher
        if not tc.base_url or not tc.model:
            raise ConfigError("teacher.kind is 'llm' but teacher.base_url or teacher.model is not set")
        err = OpenAIPolicy(tc.base_url, tc.model, api_key_env=tc.api_key_env, timeout_s=min(tc.timeout_s, 15),
                           max_retries=0).ping()
        if err:
            raise EndpointError(f"teacher endpoint {tc.base_url} is not reachable: {err}")

    def load_policy(self, model: str | Path, name: str):
        from score_distill.models.hf import TransformersPolicy

        device = None if self.cfg.student.device == "auto" else self.cfg.student.device
        policy = TransformersPolicy(str(model), name=name, batch_size=self.cfg.student.batch_size, device=device)
        policy.draft_tokens = self.cfg.student.draft_tokens
        return policy

    @staticmethod
    def resolve_model(model: str) -> str:
        return resolve_model(model)

    def with_tracking(self, sft_cfg: Any) -> Any:
        """TensorBoard always; W&B or trackio when asked for and installed (a warning, not an error, if not)."""
        import importlib.util

        if sft_cfg.report_to != "auto":
            return sft_cfg
        tr = self.cfg.tracking
        for flag, module in (("wandb", "wandb"), ("trackio", "trackio")):
            if getattr(tr, flag):
                if importlib.util.find_spec(module):
                    return sft_cfg.model_copy(update={"report_to": flag})
                console.print(f"[yellow]tracking.{flag} is on but the '{module}' package is not installed; "
                              "logging to TensorBoard only.[/]")
        return sft_cfg.model_copy(update={"report_to": "tensorboard" if tr.tensorboard else "none"})

    def close(self) -> None:
        """Release the sandbox pool; the teacher holds it, so it goes too (both are rebuilt on demand)."""
        if self._pool is not None:
            self._pool.close()
        self._pool = None
        self._teacher = None
