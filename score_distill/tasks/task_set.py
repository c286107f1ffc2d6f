"""The one task-set builder: built-in suites x horizons of one stream, labelled by suite, cleaned against others.

Every task set a run, a comparison or a benchmark makes goes through ``task_set``: generated with
:func:`score_distill.tasks.registry.make_tasks` (so the same stream always gives the same tasks first) and
de-duplicated against the tasks it must not share a question with (:mod:`score_distill.tasks.contamination`).
"""

from __future__ import annotations

from collections.abc import Sequence

from score_distill.trajectory import Task


def suite_key(suite: str, horizon: int) -> str:
    return f"{suite}@H{horizon}"


def generate(suites: Sequence[str], horizons: Sequence[int], n: int, seed: int, split: str,
             skip_ids: set[str] | None = None) -> list[Task]:
    """``n`` tasks per suite and horizon of stream ``seed``, each with ``meta["suite_key"]``; ``skip_ids`` left out."""
    from score_distill.tasks.registry import make_tasks

    out: list[Task] = []
    for suite in suites:
        for h in horizons:
            for t in make_tasks(suite, n, h, seed, split=split):
                if skip_ids and t.id in skip_ids:
                    continue
                t.meta["suite_key"] = suite_key(suite, h)
                out.append(t)
    return out


def task_set(suites: Sequence[str], horizons: Sequence[int], n: int, seed: int, split: str, *,
             against: Sequence[Task] = (), skip_ids: set[str] | None = None):
    """``generate``, then without any task whose question duplicates one of ``against``.
    Returns (tasks, the contamination report)."""
    from score_distill.tasks.contamination import dedupe_against_eval

    tasks = generate(suites, horizons, n, seed, split, skip_ids)
    return dedupe_against_eval(tasks, list(against))


def by_suite(tasks: Sequence[Task]) -> dict[str, list[Task]]:
    suites: dict[str, list[Task]] = {}
    for t in tasks:
        suites.setdefault(t.meta.get("suite_key", t.source or "tasks"), []).append(t)
    return suites
