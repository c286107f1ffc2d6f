"""The trajectory browser's data: MPS trajectories as JSON safe to embed in the page.

Model-written text is hostile. It reaches the page only (1) inside a ``<script
type="application/json">`` block, where every ``<``, ``>`` and ``&`` is written as a JSON
``\\u`` escape so no ``</script>`` or ``<!--`` can end the block, and (2) through the page's JS,
which puts it in the DOM with ``textContent`` only, never as markup.
"""

from __future__ import annotations

import json
from typing import Any

from score_distill.trajectory import Correction, Step, Trajectory

MAX_TRAJECTORIES = 300
MAX_FIELD_CHARS = 6000  # per thought/code/observation: keeps a 300-trajectory page a few MB at most


def _cut(text: str | None, limit: int = MAX_FIELD_CHARS) -> str:
    text = text or ""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… {len(text) - limit:,} more characters cut in the report]"


def _step(s: Step) -> dict[str, Any]:
    return {
        "kind": s.kind,
        "origin": s.origin,
        "thought": _cut(s.thought),
        "code": _cut(s.code),
        "observation": _cut(s.observation),
        "final_answer": s.final_answer,
        "error": s.error,
        "format_errors": list(s.format_errors),
    }


def _correction(c: Correction) -> dict[str, Any]:
    return {
        "step_index": c.step_index,
        "valid": c.valid,
        "analysis": _cut(c.analysis),
        "suggestion": _cut(c.suggestion),
        "chosen": _step(c.chosen),
        "rejected": _step(c.rejected),
        "teacher_tokens": c.teacher_usage.total_tokens,
    }


def trajectory_item(t: Trajectory) -> dict[str, Any]:
    answer = t.task.answer if isinstance(t.task.answer, str) else " | ".join(t.task.answer)
    return {
        "id": t.id,
        "task_id": t.task.id,
        "source": t.task.source,
        "question": _cut(t.task.question),
        "answer": answer,
        "final_answer": t.final_answer,
        "outcome": t.outcome,
        "score": t.score,
        "hard_to_teach": t.hard_to_teach,
        "policy": t.policy,
        "steps": [_step(s) for s in t.steps],
        "corrections": [_correction(c) for c in t.corrections],
    }


def select_trajectories(trajs: list[Trajectory], cap: int = MAX_TRAJECTORIES) -> list[Trajectory]:
    """At most ``cap``, the instructive ones first (corrected, then hard-to-teach), file order within."""
    if len(trajs) <= cap:
        return list(trajs)
    def order(i: int) -> tuple[int, int]:
        return (0 if trajs[i].corrections else 1 if trajs[i].hard_to_teach else 2, i)

    rank = sorted(range(len(trajs)), key=order)
    keep = sorted(rank[:cap])
    return [trajs[i] for i in keep]


def embed_json(obj: Any) -> str:
    """JSON for a ``<script type="application/json">`` block: no character of it can close the block."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def browser_payload(trajs: list[Trajectory], cap: int = MAX_TRAJECTORIES) -> tuple[str, int, int]:
    """(embedded JSON, number shown, total). Ids must be unique: the page selects by ``#traj=ID``."""
    shown = select_trajectories(trajs, cap)
    items = [trajectory_item(t) for t in shown]
    return embed_json(items), len(items), len(trajs)
