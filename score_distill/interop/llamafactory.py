"""LLaMA-Factory sharegpt data: export trajectories for its SFT, and import such files back.

The shape is the SCoRe reference's (``*_llamafactory.json``): ``{"conversations": [{"from": "human" |
"gpt", "value": ...}]}`` with the question as the first human turn, each step as a gpt turn and each
observation as a human turn (``Observation: ...``); the observation after the final step is left out,
as in the reference. Our export adds an optional ``system`` column. :func:`dataset_info_entry` is the
matching ``dataset_info.json`` entry (columns and tags) for LLaMA-Factory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from score_distill.agent import format as fmt
from score_distill.trajectory import Step, Task, Trajectory
from score_distill.utils.jsonl import DataError, read_json_list, write_json

TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}


def to_sharegpt(traj: Trajectory, system: str | None = "") -> dict[str, Any]:
    """One trajectory -> one sharegpt record. ``system=None``: our CodeAct system prompt;
    ``""`` (default, like the reference): no system column."""
    conv = [{"from": "human", "value": traj.task.question}]
    for i, s in enumerate(traj.steps):
        conv.append({"from": "gpt", "value": s.render()})
        if i < len(traj.steps) - 1:
            conv.append({"from": "human", "value": s.render_observation()})
    rec: dict[str, Any] = {"conversations": conv}
    sys_text = fmt.system_prompt(traj.task.tools) if system is None else system
    if sys_text:
        rec["system"] = sys_text
    return rec


def from_sharegpt(rec: dict, path: str | Path = "<record>", index: int = 0) -> Trajectory:
    """One sharegpt record -> Trajectory (the task's answer is unknown in this format: empty)."""
    p = Path(path)
    conv = rec.get("conversations") if isinstance(rec, dict) else None
    if not isinstance(conv, list) or not conv:
        raise DataError(p, None, f"record {index}: 'conversations' must be a non-empty list")
    for j, t in enumerate(conv):
        if not isinstance(t, dict) or t.get("from") not in ("human", "gpt") or not isinstance(t.get("value"), str):
            raise DataError(p, None, f"record {index}: conversations.{j} must be {{from: human|gpt, value: str}}")
    if conv[0]["from"] != "human":
        raise DataError(p, None, f"record {index}: the first turn must be the human question")
    steps: list[Step] = []
    for j in range(1, len(conv), 2):
        if conv[j]["from"] != "gpt" or (j + 1 < len(conv) and conv[j + 1]["from"] != "human"):
            raise DataError(p, None, f"record {index}: turns must alternate human/gpt (at conversations.{j})")
        text = conv[j]["value"]
        parsed = fmt.parse_step(text, is_first=not steps)
        s = Step(kind=parsed.kind, thought=parsed.thought, code=parsed.code, format_errors=parsed.format_errors)  # type: ignore[arg-type]
        if s.render() != text:
            s.raw = text
        if j + 1 < len(conv):
            obs = conv[j + 1]["value"]
            s.observation = obs[len(fmt.OBSERVATION_PREFIX):] if obs.startswith(fmt.OBSERVATION_PREFIX) else obs
        steps.append(s)
    meta: dict[str, Any] = {}
    if "system" in rec:
        meta["system"] = rec["system"]
    return Trajectory(
        id=f"{p.stem}-{index}",
        task=Task(id=f"{p.stem}-{index}", question=conv[0]["value"], answer="", source=p.stem),
        steps=steps,
        meta=meta,
    )


def load_sharegpt(path: str | Path) -> list[Trajectory]:
    p = Path(path)
    data = read_json_list(p)
    return [from_sharegpt(r, p, i) for i, r in enumerate(data)]


def dataset_info_entry(file_name: str, with_system: bool = False) -> dict[str, Any]:
    columns = {"messages": "conversations"}
    if with_system:
        columns["system"] = "system"
    return {"file_name": file_name, "formatting": "sharegpt", "columns": columns, "tags": dict(TAGS)}


def export_llamafactory(
    trajs: list[Trajectory], out_dir: str | Path, name: str = "score_sft", system: str | None = ""
) -> Path:
    """Write ``<name>.json`` and merge its entry into ``dataset_info.json`` in ``out_dir``."""
    out = Path(out_dir)
    recs = [to_sharegpt(t, system) for t in trajs]
    data_file = out / f"{name}.json"
    write_json(data_file, recs)
    info_file = out / "dataset_info.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    info[name] = dataset_info_entry(data_file.name, with_system=any("system" in r for r in recs))
    write_json(info_file, info)
    return data_file
