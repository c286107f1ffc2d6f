"""A run directory: where each stage's outputs, its done-marker, the manifest and the trash live.

    RUN/manifest.json         resolved config, seed, package versions, git revision, machine, and the history of
                              every command run in the folder (a resumed run's stages come from several)
    RUN/config.yaml           the resolved config
    RUN/<stage>/stage.json    written last, atomically, by ``mark_done`` only: the stage is done (seconds, outputs)
    RUN/.trash/<stage>-<time> the outputs of stages rerun with ``--from``
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.markup import escape

from score_distill.trajectory import Task
from score_distill.utils.config_diff import config_changes
from score_distill.utils.console import detail
from score_distill.utils.jsonl import read_jsonl, write_atomic, write_json

console = detail  # RUN/run.log unless --verbose (utils/console.py)
DISABLED = "disabled"  # the ``skipped`` value of a stage switched off by the configuration


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("score-distill", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "openai",
                "math-verify", "bm25s", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_revision() -> str | None:
    """The source tree's commit, with ``-dirty`` when it has uncommitted changes; None outside git."""
    src = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    import torch  # lazy: the CLI imports this module on start-up (`score-distill --help`)

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._manifest_written = False

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def state(self, stage: str) -> dict[str, Any] | None:
        p = self.stage_dir(stage) / "stage.json"
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a torn marker cannot happen (atomic write); treat anything odd as not done

    def done(self, stage: str, enabled: bool = True) -> bool:
        """Done, and still done under this configuration: a stage skipped while switched off is owed once
        it is switched on."""
        st = self.state(stage)
        if not st:
            return False
        return not (st.get("skipped") == DISABLED and enabled)

    def mark_done(self, stage: str, seconds: float, **info: Any) -> None:
        """The one writer of ``stage.json`` (atomic): after it, the stage is skipped on a rerun."""
        write_json(self.stage_dir(stage) / "stage.json", {"status": "done", "seconds": round(seconds, 2), **info})

    def model_of(self, stage: str) -> str | None:
        st = self.state(stage)
        return st.get("model") if st else None

    def tasks(self, name: str) -> list[Task]:
        """``RUN/tasks/<name>.jsonl``: train, eval, bc or mps."""
        return read_jsonl(self.stage_dir("tasks") / f"{name}.jsonl", Task)

    def manifest(self) -> dict[str, Any]:
        p = self.path / "manifest.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def write_manifest(self, cfg: Any, preset: str) -> None:
        from score_distill.config import dump_config

        # Once per command: a caller that runs the stages in several calls is one resumption, not many.
        if self._manifest_written:
            return
        self._manifest_written = True
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "name": cfg.name,
            "preset": preset,
            "seed": cfg.seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": sys.argv,
            "config": cfg.model_dump(mode="json"),
            "versions": versions(),
            "git_revision": git_revision(),
            "machine": machine(),
        }
        # Every command that worked in this folder, in order: a resumed run's figures come from all of them,
        # so "command"/"git_revision" (the latest) alone would misstate how its earlier stages were made.
        keys = ("created", "command", "git_revision")
        this = {k: manifest[k] for k in keys}
        history = [this]
        path = self.path / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text())
            if changes := config_changes(old.get("config"), manifest["config"]):
                shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
                # Escaped: a value such as "[0, 1]" would otherwise be read as rich markup.
                console.print(f"[yellow]note: the config differs from this run directory's manifest ({escape(shown)}); "
                              "finished stages are kept (use --from STAGE to redo them).[/]")
                this["config_changes"] = changes  # the record keeps what changed, not only the latest config
            manifest["created"] = old.get("created", manifest["created"])
            manifest["resumed"] = old.get("resumed", 0) + 1
            history = old.get("history") or [{k: old.get(k) for k in keys}]
            history.append(this)
        manifest["history"] = history
        write_json(path, manifest)
        write_atomic(self.path / "config.yaml", dump_config(cfg))

    def trash(self, stages: list[str]) -> None:
        """Move the outputs of ``stages`` to ``RUN/.trash/`` (a rerun never deletes finished work)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for s in stages:
            d = self.stage_dir(s)
            if d.exists():
                dest = self.path / ".trash" / f"{s}-{stamp}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(d), str(dest))
