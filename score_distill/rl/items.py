"""RL items: where each SCoRe-RL rollout group starts and what its key step is compared with.

An item is built from the RL half of the MPS output:

* one ``key_step`` item per valid correction: prompt = task + verified prefix, ``chosen`` = the
  teacher's replacement step (with its observation), ``rejected`` = the student's wrong step (with
  its observation), the reference answer in ``task``;
* tasks without a usable correction join as ``question_only`` items (no prefix, outcome reward only),
  sampled: unsolved ones with ``keep_unsolved_prob``, ones the student solved alone with
  ``keep_solved_prob`` (seeded, so the same trajectories always give the same items).

Also reads the reference implementation's RL items (``math_mps_rl.json``) so its data can be trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from score_distill.agent import format as fmt
from score_distill.rl.config import ItemsConfig
from score_distill.trajectory import Step, Task, Trajectory
from score_distill.utils.jsonl import DataError, read_jsonl, write_jsonl

ItemKind = Literal["key_step", "question_only"]


class RLItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    id: str
    kind: ItemKind
    task: Task
    prefix: list[Step] = Field(default_factory=list)  # verified prefix s_1..s_{k-1}
    chosen: Step | None = None  # teacher's step s'_k, executed (observation set)
    rejected: Step | None = None  # student's wrong step s_k, executed
    step_index: int | None = None  # k, 0-based (0 = the plan)
    analysis: str = ""
    source_trajectory: str = ""
    solved_alone: bool = False

    @property
    def has_key_step(self) -> bool:
        return self.kind == "key_step" and self.chosen is not None and self.rejected is not None


class SplitLeakError(ValueError):
    """An RL item's task also belongs to the SFT half (the halves must share no task)."""


def _item_id(traj: Trajectory, tag: str) -> str:
    return f"{traj.task.id}:{hashlib.sha1(f'{traj.id}/{tag}'.encode()).hexdigest()[:10]}"


def _keep(rng_seed: int, task_id: str, prob: float) -> bool:
    # One independent draw per task, keyed by the task id: the decision does not depend on the
    # order of the input file or on how many other tasks there are.
    rnd = random.Random(f"{rng_seed}/{task_id}")
    return rnd.random() < prob


def build_rl_items(
    trajectories: Iterable[Trajectory],
    *,
    sft_task_ids: Iterable[str],
    config: ItemsConfig | None = None,
) -> list[RLItem]:
    """RL items from the RL half of MPS; raises :class:`SplitLeakError` if a task is in the SFT half too."""
    cfg = config or ItemsConfig()
    sft_ids = set(sft_task_ids)
    trajs = list(trajectories)
    leaked = sorted({t.task.id for t in trajs} & sft_ids)
    if leaked:
        raise SplitLeakError(
            f"{len(leaked)} task(s) of the RL half are also in the SFT half, e.g. {leaked[:5]}; "
            "split MPS output by task"
        )
    items: list[RLItem] = []
    for traj in trajs:
        valid = traj.valid_corrections()
        usable = valid and (traj.correct or not cfg.require_verified)
        if usable:
            for c in valid:
                if c.step_index != len(c.prefix):
                    raise DataError(
                        f"trajectory {traj.id}", None,
                        f"correction step_index {c.step_index} != prefix length {len(c.prefix)}",
                    )
                items.append(
                    RLItem(
                        id=_item_id(traj, f"c{c.step_index}"),
                        kind="key_step",
                        task=traj.task,
                        prefix=[s.model_copy(deep=True) for s in c.prefix],
                        chosen=c.chosen.model_copy(deep=True),
                        rejected=c.rejected.model_copy(deep=True),
                        step_index=c.step_index,
                        analysis=c.analysis,
                        source_trajectory=traj.id,
                    )
                )
            continue
        solved_alone = traj.correct and not traj.corrections
        prob = cfg.keep_solved_prob if solved_alone else cfg.keep_unsolved_prob
        if _keep(cfg.seed, traj.task.id, prob):
            items.append(
                RLItem(
                    id=_item_id(traj, "q"),
                    kind="question_only",
                    task=traj.task,
                    source_trajectory=traj.id,
                    solved_alone=solved_alone,
                )
            )
    return items


def save_items(path: str | os.PathLike, items: Iterable[RLItem]) -> int:
    return write_jsonl(path, items)


def load_items(path: str | os.PathLike) -> list[RLItem]:
    return read_jsonl(path, RLItem)


# --- the reference implementation's RL files -------------------------------------------------


def _step_from_text(text: str, observation: str, *, is_first: bool, origin: str) -> Step:
    p = fmt.parse_step(text, is_first=is_first)
    obs = observation.removeprefix(fmt.OBSERVATION_PREFIX)
    return Step(
        kind=p.kind,
        thought=p.thought,
        code=p.code,
        observation="" if p.kind == "plan" else obs,
        origin=origin,  # type: ignore[arg-type]
        format_errors=p.format_errors,
    )


def from_reference_rl(path: str | os.PathLike, *, source: str = "score-official") -> list[RLItem]:
    """Read the reference pipeline's RL items.

    The file is a JSON list of records: prompt, chosen(_observation), rejected(_observation), gt_answer.

    Items with an empty ``chosen`` are question-only; the others carry their verified prefix parsed
    from the prompt's assistant/observation turns.
    """
    p = Path(path)
    try:
        records = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(p, e.lineno, f"invalid JSON ({e.msg})") from None
    if not isinstance(records, list):
        raise DataError(p, None, "expected a JSON list of RL items")
    items: list[RLItem] = []
    for n, rec in enumerate(records):
        where = f"item {n}"
        for key in ("prompt", "gt_answer"):
            if key not in rec:
                raise DataError(p, None, f"{where}: missing field '{key}'")
        prompt = rec["prompt"]
        if not prompt or prompt[0].get("role") != "user":
            raise DataError(p, None, f"{where}: field 'prompt' must start with the user question")
        question = prompt[0]["content"]
        prefix: list[Step] = []
        turns = prompt[1:]
        for i in range(0, len(turns), 2):
            a = turns[i]
            if a.get("role") != "assistant":
                raise DataError(p, None, f"{where}: prompt turn {i + 1} should be 'assistant', got {a.get('role')!r}")
            obs = turns[i + 1]["content"] if i + 1 < len(turns) else ""
            prefix.append(_step_from_text(a["content"], obs, is_first=not prefix, origin="student"))
        task_id = f"{source}:{hashlib.sha1(question.encode()).hexdigest()[:12]}"
        task = Task(id=task_id, question=question, answer=str(rec["gt_answer"]), source=source)
        chosen_text = rec.get("chosen") or ""
        if chosen_text:
            first = not prefix
            items.append(
                RLItem(
                    id=f"{task_id}:k{len(prefix)}",
                    kind="key_step",
                    task=task,
                    prefix=prefix,
                    chosen=_step_from_text(
                        chosen_text, rec.get("chosen_observation", ""), is_first=first, origin="teacher"
                    ),
                    rejected=_step_from_text(
                        rec.get("rejected", ""), rec.get("rejected_observation", ""), is_first=first, origin="student"
                    ),
                    step_index=len(prefix),
                )
            )
        else:
            items.append(RLItem(id=f"{task_id}:q", kind="question_only", task=task))
    return items
