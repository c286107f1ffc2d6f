"""Checkpoints of an RL run: weights (or LoRA adapter), optimizer, RNG states and the item cursor.

A checkpoint is written to a temporary folder and renamed to ``checkpoints/step_N`` only when complete,
so a crash mid-save leaves the previous checkpoint as the latest. ``state.json`` is written last;
a folder without it is not a checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from score_distill.utils.jsonl import DataError, write_json

_STEP = re.compile(r"^step_(\d+)$")


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def checkpoints(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP.match(p.name)
        if m and (p / "state.json").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    found = checkpoints(out_dir)
    return found[-1][1] if found else None


def save_checkpoint(out_dir: str | os.PathLike, step: int, model: Any, tokenizer: Any, optimizer: Any,
                    state: dict[str, Any], keep: int = 2) -> Path:
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".step_{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp / "model")  # a PeftModel saves its adapter only
    tokenizer.save_pretrained(tmp / "model")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    write_json(tmp / "state.json", {**state, "step": step})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(ckpt: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((ckpt / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(ckpt / "state.json", None, f"unreadable checkpoint state: {e}") from None


def load_optimizer_and_rng(ckpt: Path, optimizer: Any) -> None:
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
    set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
