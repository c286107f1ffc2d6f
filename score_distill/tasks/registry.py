"""Built-in task suites by name, and the host-side tools a task needs.

Tasks are a pure function of (suite, horizon, seed, split, index): each task draws from its own
``random.Random`` seeded with a string naming all five, so the same arguments give identical
tasks, any subset can be regenerated, and train/eval come from disjoint streams. The search
suite's knowledge base also differs between splits (``kb_seed``), so facts learnt on training
questions say nothing about evaluation answers.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from score_distill.trajectory import Task

from .knowledge_base import get_kb
from .math_suite import make_math_task
from .search_suite import make_search_task

SUITES = ("math", "search")
SPLITS = ("train", "eval")


def kb_seed_for(seed: int, split: str) -> int:
    # Disjoint per split; the arithmetic keeps it an int so it is readable in the task's meta.
    return seed * 2 + (1 if split == "eval" else 0)


def make_tasks(suite: str, n: int, horizon: int, seed: int = 0, split: str = "train", start: int = 0) -> list[Task]:
    """``n`` tasks of ``suite`` with horizon ``horizon``; ids are ``{suite}-{split}-s{seed}-h{H}-{index}``."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'eval'")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    tasks = []
    for i in range(start, start + n):
        tid = f"{suite}-{split}-s{seed}-h{horizon}-{i:05d}"
        rng = random.Random(f"{suite}/{split}/{seed}/{horizon}/{i}")
        if suite == "math":
            tasks.append(make_math_task(tid, horizon, rng, seed))
        else:
            tasks.append(make_search_task(tid, kb_seed_for(seed, split), horizon, rng, seed))
        tasks[-1].meta["split"] = split
    return tasks


def tools_for(task: Task, search: Callable[[str], str] | None = None) -> dict[str, Callable[..., str]]:
    """Host-side tools for ``task``'s sandbox.

    Built-in search tasks get ``web_search`` over their own knowledge base (found again from
    ``meta["kb_seed"]``, so a task read back from JSONL works). Other tasks that list
    ``web_search`` need a backend passed as ``search`` (BM25Search over a corpus, HTTPSearch).
    """
    if "web_search" not in task.tools:
        return {}
    if "kb_seed" in task.meta:
        kb = get_kb(int(task.meta["kb_seed"]))
        return {"web_search": kb.search}
    if search is None:
        raise ValueError(f"task {task.id} uses web_search but no search backend was given "
                         "(configure a corpus or an HTTP search API)")
    return {"web_search": search}


def preview_tasks(suite: str, n: int = 3, horizon: int = 2, seed: int = 0, split: str = "train") -> str:
    """Human-readable listing for ``score-distill tasks``: question, answer and solution steps."""
    out = []
    for t in make_tasks(suite, n, horizon, seed, split):
        out.append(f"== {t.id}\nQ: {t.question}\nA: {t.answer}")
        for j, s in enumerate(t.meta["solution"]):
            if s["kind"] == "plan":
                out.append(f"  [plan] {s['thought']}")
            else:
                code = s["code"].replace("\n", "; ")
                out.append(f"  [{j}] {code}   -> {s['value']}")
    return "\n".join(out)
