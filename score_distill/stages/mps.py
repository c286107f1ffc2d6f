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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from score_distill.agent.loop import AgentConfig, EpisodeStart, Scorer, ToolsFor, run_episodes
from score_distill.models.base import Policy
from score_distill.stages.mps_status import TRANSIENT_CAUSES as TRANSIENT_CAUSES  # re-exported
from score_distill.stages.mps_status import Failure, MPSStatus
from score_distill.teachers.base import Teacher
from score_distill.teachers.guards import check_teacher_step
from score_distill.trajectory import Correction, Task, Trajectory, Usage
from score_distill.utils.jsonl import append_jsonl, read_jsonl, write_jsonl
from score_distill.utils.seeds import derive_seed

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


@dataclass
class _Work:
    traj: Trajectory
    status: str | None = None
    failure: str | None = None
    pending: Correction | None = None  # the correction whose continuation is running


def _status_meta(w: _Work) -> Trajectory:
    t = w.traj
    t.meta["mps_status"] = w.status
    t.meta["n_corrections"] = len(t.corrections)
    if w.failure:
        t.meta["failure"] = w.failure
        t.meta["failure_record"] = Failure.parse(w.failure).to_dict()
    t.hard_to_teach = w.status == HARD_TO_TEACH
    return t


def mentor_chunk(
    student: Policy,
    teacher: Teacher,
    tasks: list[Task],
    pool: Any,
    agent: AgentConfig,
    *,
    max_corrections: int,
    tools_for: ToolsFor | None = None,
    scorer: Scorer | None = None,
) -> list[Trajectory]:
    """Run MPS on a batch of tasks; returns one final trajectory per task, in order."""
    def run(starts: list[EpisodeStart], label: str) -> list[Trajectory]:
        return run_episodes(student, starts, pool, agent, tools_for=tools_for, scorer=scorer, progress=label)

    first = run([EpisodeStart(t, id=f"mps-{t.id}") for t in tasks], "MPS: student attempts")
    work = [_Work(t) for t in first]
    for w in work:
        if w.traj.correct:
            w.status = SOLVED_ALONE

    for _round in range(max_corrections):
        active = [w for w in work if w.status is None]
        if not active:
            break
        verdicts = teacher.locate([w.traj for w in active])
        to_fix: list[tuple[_Work, Any]] = []
        for w, v in zip(active, verdicts):
            w.traj.teacher_usage.add(v.usage)
            k = v.first_error_step
            if v.failure:
                w.status, w.failure = FAILED, f"locate: {v.failure}"
            elif v.is_correct or k is None:
                w.status = HARD_TO_TEACH
                if v.is_correct:
                    w.failure = "teacher judged a wrong trajectory correct"
            elif not 0 <= k < len(w.traj.steps):
                w.status, w.failure = FAILED, f"locate: step index {k} out of range 0..{len(w.traj.steps) - 1}"
            else:
                to_fix.append((w, v))
        if not to_fix:
            continue
        proposals = teacher.correct([w.traj for w, _ in to_fix], [v for _, v in to_fix])
        starts, fixing = [], []
        for (w, v), p in zip(to_fix, proposals):
            w.traj.teacher_usage.add(p.usage)
            if p.failure or p.step is None:
                w.status, w.failure = FAILED, f"correct: {p.failure or 'no step'}"
                continue
            k = v.first_error_step
            steps = w.traj.steps
            # Every teacher's step passes the leak and correction-talk guards (the oracle's too); a step
            # that fails them is recorded with the task and never executed, trained on or made an RL target.
            violation = check_teacher_step(p.step, w.traj.task, steps[:k])
            if violation is not None:
                violation.step_index, violation.teacher = k, getattr(teacher, "name", "")
                w.status, w.failure = FAILED, violation.reason()
                w.traj.meta["guard_violation"] = violation.model_dump(mode="json")
                continue
            chosen = p.step.model_copy(update={"origin": "teacher", "observation": "", "final_answer": None})
            for c in w.traj.corrections:
                if c.step_index >= k:
                    c.valid = False  # its teacher step is cut away by this correction
            usage = Usage().add(v.usage).add(p.usage)
            w.pending = Correction(
                step_index=k,
                prefix=[s.model_copy(deep=True) for s in steps[:k]],
                chosen=chosen,
                rejected=steps[k].model_copy(deep=True),
                analysis=v.analysis,
                suggestion=v.suggestion,
                teacher_usage=usage,
            )
            # Continues from the student's own ids (Step.tokens) on the engine; a seed of its own per round.
            seed = None if agent.sampling.seed is None else derive_seed(agent.sampling.seed, w.traj.id, _round + 1)
            starts.append(
                EpisodeStart(w.traj.task, prefix=steps[:k] + [chosen], execute_last=True, id=w.traj.id, seed=seed)
            )
            fixing.append(w)
        for w, cont in zip(fixing, run(starts, f"MPS: after correction {_round + 1}")):
            corr = w.pending
            corr.chosen = cont.steps[corr.step_index].model_copy(deep=True)  # now with its observation
            cont.corrections = w.traj.corrections + [corr]
            cont.teacher_usage = w.traj.teacher_usage
            cont.meta = {**w.traj.meta, **cont.meta}
            w.traj, w.pending = cont, None
            if cont.correct:
                w.status = CORRECTED
    for w in work:
        if w.status is None:
            w.status = EXHAUSTED
    return [_status_meta(w) for w in work]


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
    for ci, chunk in enumerate(chunks):
        todo = [t for t in chunk if t.id not in done or (cfg.retry_failed and teacher_unreachable(done[t.id]))]
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
