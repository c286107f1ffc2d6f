"""Stage 2: Mentored Problem Solving (MPS).

For each task the student solves alone. A wrong *or unfinished* trajectory goes to the teacher, who
locates the first critical error ``k`` and writes one replacement step. The interpreter state is
rebuilt from the verified prefix ``steps[:k]`` (replayed in a fresh sandbox, so nothing leaks from
the discarded steps), the teacher's step is executed, and the student continues. This repeats up to
``max_corrections`` times. Every correction is kept as a key-step record; one that a later
correction cut away (a later ``k`` at or before it) is marked invalid.

Resumability: tasks are processed in fixed chunks (chunk ``i`` is always the same tasks, sampled
with the same seed), and a chunk's records are appended in one durable write when the whole chunk
is done. A run killed mid-chunk redoes that chunk and produces exactly the records an
uninterrupted run would have, none duplicated.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from score_distill.agent.loop import AgentConfig, Scorer, ToolsFor
from score_distill.models.base import Policy
from score_distill.stages.mps_mentor import mentor_chunk as mentor_chunk  # re-exported
from score_distill.stages.mps_status import TRANSIENT_CAUSES as TRANSIENT_CAUSES  # re-exported
from score_distill.stages.mps_status import Failure, MPSStatus
from score_distill.teachers.base import Teacher
from score_distill.trajectory import Task, Trajectory, Usage
from score_distill.utils.jsonl import append_jsonl, read_jsonl, write_jsonl
from score_distill.utils.progress import progress_bar

# Final status of a task after MPS (typed: score_distill.stages.mps_status).
SOLVED_ALONE = MPSStatus.SOLVED_ALONE
CORRECTED = MPSStatus.CORRECTED
HARD_TO_TEACH = MPSStatus.HARD_TO_TEACH
EXHAUSTED = MPSStatus.EXHAUSTED
FAILED = MPSStatus.FAILED


class MPSConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_corrections: int = Field(3, ge=0, description="Corrections per task (released code: 3, paper: 5).")
    chunk_size: int = Field(16, ge=1, description="Tasks per durable chunk (the unit of resume).")
    retry_failed: bool = Field(
        True,
        description="Redo, when the stage runs again, the tasks that failed because the teacher could not be "
        "reached (timeouts, connection, server errors, rate limits); the pipeline stops after MPS while such "
        "tasks remain. False: keep them as failed and go on.",
    )


def teacher_unreachable(record: Trajectory) -> bool:
    """The task failed only because the teacher could not be reached: worth redoing on a rerun."""
    if record.meta.get("mps_status") != FAILED:
        return False
    failure = Failure.of(record.meta)
    return failure is not None and failure.stage in ("locate", "correct") and failure.transient


def run_mps(
    student: Policy,
    teacher: Teacher,
    tasks: list[Task],
    pool: Any,
    agent: AgentConfig,
    cfg: MPSConfig,
    out_path: Path,
    *,
    seed: int = 0,
    tools_for: ToolsFor | None = None,
    scorer: Scorer | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> list[Trajectory]:
    """MPS over all tasks, resumable from ``out_path`` (one JSONL record per task).

    With ``cfg.retry_failed``, tasks recorded as failed because the teacher was unreachable are
    redone; their new records replace the old ones in one atomic rewrite of the file, so the file
    keeps exactly one record per task whatever happens in between."""
    done: dict[str, Trajectory] = {}
    if out_path.exists():
        for t in read_jsonl(out_path, Trajectory):
            done.setdefault(t.task.id, t)
    chunks = [tasks[i : i + cfg.chunk_size] for i in range(0, len(tasks), cfg.chunk_size)]
    todos = [[t for t in chunk if t.id not in done or (cfg.retry_failed and teacher_unreachable(done[t.id]))]
             for chunk in chunks]
    with progress_bar(sum(map(len, todos)), "MPS: tasks") as bar:
        for ci, todo in enumerate(todos):
            if not todo:
                continue
            # A chunk is written whole, so a partly present chunk cannot happen; the seed depends only on
            # the chunk index so a redone chunk samples exactly as the first attempt did.
            sampling = agent.sampling.model_copy(update={"seed": seed * 100_003 + ci})
            records = mentor_chunk(
                student,
                teacher,
                todo,
                pool,
                agent.model_copy(update={"sampling": sampling}),
                max_corrections=cfg.max_corrections,
                tools_for=tools_for,
                scorer=scorer,
                bar=bar,
            )
            retried = any(t.id in done for t in todo)
            for r in records:
                done[r.task.id] = r
            if retried:
                write_jsonl(out_path, list(done.values()))  # file order, retried records in place
            else:
                append_jsonl(out_path, records)
            if on_chunk:
                on_chunk(ci + 1, len(chunks))
    return [done[t.id] for t in tasks if t.id in done]


def failure_cause(reason: str | dict[str, Any]) -> str:
    """A countable cause, ``<stage>: <cause>``, from a record's meta or an old reason text
    ("locate: request failed: timeout: timed out after 60s" -> "locate: timeout")."""
    failure = Failure.of(reason) if isinstance(reason, dict) else Failure.parse(reason)
    return failure.label() if failure else ""


def mps_statistics(records: list[Trajectory]) -> dict[str, Any]:
    """Counts the report needs: corrections per task, first-error positions, teacher cost."""
    n = len(records)
    status = collections.Counter(r.meta.get("mps_status", "?") for r in records)
    hist = collections.Counter()
    for r in records:
        if r.meta.get("mps_status") in (SOLVED_ALONE, CORRECTED):
            c = len(r.corrections)
            hist["3+" if c >= 3 else str(c)] += 1
    first_err = collections.Counter(str(r.corrections[0].step_index) for r in records if r.corrections)
    failures = collections.Counter(failure_cause(r.meta) for r in records if Failure.of(r.meta))
    retained = [r for r in records if r.correct]
    usage = Usage()
    for r in records:
        usage.add(r.teacher_usage)
    valid = sum(1 for r in records for c in r.corrections if c.valid)
    return {
        "n_tasks": n,
        "status": dict(status),
        "corrections_hist": {k: hist.get(k, 0) for k in ("0", "1", "2", "3+")},
        "hard_to_teach": status.get(HARD_TO_TEACH, 0),
        "failed": status.get(FAILED, 0),
        "exhausted": status.get(EXHAUSTED, 0),
        "failures_by_cause": dict(failures),
        "first_error_hist": dict(sorted(first_err.items(), key=lambda kv: int(kv[0]))),
        "key_steps": sum(len(r.corrections) for r in records),
        "key_steps_valid": valid,
        "retained": len(retained),
        "teacher_tokens": usage.total_tokens,
        "teacher_prompt_tokens": usage.prompt_tokens,
        "teacher_completion_tokens": usage.completion_tokens,
        "teacher_calls": usage.calls,
        "teacher_tokens_per_retained": (usage.total_tokens / len(retained)) if retained else None,
    }


def ratio_at(alone: float, helped: float, kept: float, bc_per_retained: float) -> float:
    """MPS teacher tokens per retained trajectory over BC's, for a student that solves ``alone`` of the tasks
    alone, when a helped task costs ``helped`` tokens and ``kept`` of helped tasks end correct. A task solved
    alone costs the teacher nothing (the reference answer checks it), so this is the whole of MPS's cost."""
    retained = alone + (1 - alone) * kept
    return float("inf") if retained == 0 else (1 - alone) * helped / (bc_per_retained * retained)


def cost_breakdown(stats: dict[str, Any], bc_per_retained: float) -> dict[str, float | None] | None:
    """What sets MPS's cost, from ``mps_statistics``: the share solved alone, the tokens of a helped task (also
    in BC demonstrations), the share of helped tasks retained, and the share solved alone at which ``ratio_at``
    is 1/3 (the paper's claim) at this cost per helped task: a property of the student more than of MPS.
    Fields that nothing measured (no helped task; none retained) are None; None for no tasks."""
    n, alone = stats.get("n_tasks") or 0, (stats.get("status") or {}).get("solved_alone", 0)
    if n == 0:
        return None
    helped_n = n - alone
    helped = stats.get("teacher_tokens", 0) / helped_n if helped_n else None
    kept = max(0.0, min(1.0, (stats.get("retained", 0) - alone) / helped_n)) if helped_n else None
    even = None
    if helped is not None and kept:
        # (1-a) helped <= bc/3 (a + (1-a) kept)  <=>  a >= d / (d + bc), with d = 3 helped - bc kept
        d = 3 * helped - bc_per_retained * kept
        even = d / (d + bc_per_retained) if d > 0 else 0.0
    return {"solved_alone": alone / n, "tokens_per_helped_task": helped, "helped_kept": kept,
            "helped_over_bc": None if helped is None else helped / bc_per_retained,
            "break_even_solved_alone": even}
