"""Trajectories as a Hugging Face ``datasets`` dataset in chat format, and as JSONL.

Each row: ``messages`` (the chat rendering, ``[{"role", "content"}]``, what TRL and most SFT tools take)
plus metadata columns for filtering (ids, outcome, score, step/correction counts, step origins) and
``trajectory`` (the full record as JSON), so nothing is lost and :func:`load_trajectories` gives the
trajectories back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Dataset, load_from_disk

from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import DataError, read_jsonl, write_jsonl


def to_rows(trajs: list[Trajectory], system: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for t in trajs:
        rows.append({
            "messages": t.to_messages(system=system),
            "id": t.id,
            "task_id": t.task.id,
            "source": t.task.source,
            "answer": json.dumps(t.task.answer, ensure_ascii=False),  # str or list of aliases
            "outcome": t.outcome,
            "score": float(t.score),
            "n_steps": len(t.steps),
            "n_corrections": len(t.corrections),
            "origins": [s.origin for s in t.steps],
            "policy": t.policy,
            "schema_version": t.schema_version,
            "trajectory": t.model_dump_json(),
        })
    return rows


def to_hf_dataset(trajs: list[Trajectory], system: str | None = None):
    return Dataset.from_list(to_rows(trajs, system))


def save_trajectories_dataset(trajs: list[Trajectory], out_dir: str | Path, system: str | None = None) -> Path:
    """``out_dir/hf`` (``save_to_disk``) and ``out_dir/data.jsonl`` (same rows, one per line)."""
    out = Path(out_dir)
    rows = to_rows(trajs, system)
    Dataset.from_list(rows).save_to_disk(str(out / "hf"))
    write_jsonl(out / "data.jsonl", rows)
    return out


def load_trajectories(path: str | Path) -> list[Trajectory]:
    """From a ``save_to_disk`` folder or a JSONL file written by :func:`save_trajectories_dataset`."""
    p = Path(path)
    if p.is_dir():
        ds = load_from_disk(str(p / "hf" if (p / "hf").exists() else p))
        out = []
        for i, row in enumerate(ds):
            try:
                out.append(Trajectory.model_validate_json(row["trajectory"]))
            except Exception as e:  # pydantic ValidationError or a missing column
                raise DataError(p, None, f"row {i}: {e}") from None
        return out
    rows = read_jsonl(p)
    out = []
    for i, row in enumerate(rows, start=1):
        if "trajectory" not in row:
            raise DataError(p, i, "missing field 'trajectory'")
        try:
            out.append(Trajectory.model_validate_json(row["trajectory"]))
        except Exception as e:
            raise DataError(p, i, f"field 'trajectory': {e}") from None
    return out
