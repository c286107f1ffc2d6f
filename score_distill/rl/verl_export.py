"""Export RL items to verl's RL dataset format (parquet), for training SCoRe-RL at scale with verl.

One row per item, the columns verl's ``RLHFDataset`` reads: ``data_source``, ``prompt`` (chat list:
system, task, verified prefix as assistant/observation turns), ``ability``, ``reward_model``
(``{"style": "rule", "ground_truth": ...}``), ``agent_name`` (verl's multi-turn agent loop to use)
and ``extra_info`` (index, item id, step index and the key-step material the reward needs: the
teacher's step and the student's wrong step with their observations, as JSON strings so the parquet
schema is the same for every row). Tested here: the file reads back with this schema. Training on it with
verl needs verl's own trainer configuration and a reward function reading the key-step material; neither
ships with score-distill.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from score_distill.rl.items import RLItem
from score_distill.trajectory import Step, steps_to_messages
from score_distill.utils.jsonl import write_atomic


def _step_json(step: Step | None) -> str:
    if step is None:
        return ""
    return json.dumps({"text": step.render(), "observation": step.observation, "kind": step.kind,
                       "final_answer": step.final_answer})


def item_to_verl_row(item: RLItem, index: int, *, split: str = "train", agent_name: str = "tool_agent") -> dict:
    answers = item.task.answer if isinstance(item.task.answer, list) else [item.task.answer]
    return {
        "data_source": item.task.source or "score_distill",
        "prompt": steps_to_messages(item.task, item.prefix),
        "ability": "search" if "web_search" in item.task.tools else "math",
        "reward_model": {"style": "rule", "ground_truth": answers[0] if answers else ""},
        "agent_name": agent_name,
        "extra_info": {
            "index": index,
            "split": split,
            "item_id": item.id,
            "task_id": item.task.id,
            "kind": item.kind,
            "step_index": -1 if item.step_index is None else item.step_index,
            "answers": json.dumps(answers, ensure_ascii=False),
            "prefix": json.dumps([s.model_dump(mode="json") for s in item.prefix], ensure_ascii=False),
            "chosen": _step_json(item.chosen),
            "rejected": _step_json(item.rejected),
        },
    }


def export_verl_parquet(items: Iterable[RLItem], path: str | os.PathLike, *, split: str = "train",
                        agent_name: str = "tool_agent") -> int:
    """Write the items as one parquet file (atomically); returns the number of rows."""
    rows = [item_to_verl_row(it, i, split=split, agent_name=agent_name) for i, it in enumerate(items)]
    if not rows:
        raise ValueError("no RL items to export")
    table = pa.Table.from_pylist(rows)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_atomic(path, buf.getvalue())
    return len(rows)
