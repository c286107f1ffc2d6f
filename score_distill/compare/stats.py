"""Paired comparisons of two policies over distinct held-out tasks.

The unit is the task, not the episode: a task evaluated under several sampling seeds and training seeds
is one observation (its mean score), so repeats of one task are not counted as independent evidence.
For each task both policies ran, ``better``/``worse``/``same`` compare the two means; the two-sided sign
test is taken over the tasks that differ; the 95% interval of the mean difference is a percentile bootstrap
that resamples tasks (each task with all its episodes: a task-clustered bootstrap).

Episodes come as ``{suite: {"<episode key>/<task id>": score}}`` per run, the form study records keep
(``seed0/math-eval-s2000-h2-3``); the task is what follows the first ``/``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

Episodes = Mapping[str, Mapping[str, float]]  # suite -> episode key -> score


def task_of(key: str) -> str:
    return key.split("/", 1)[1] if "/" in key else key


def task_means(pairs: Iterable[tuple[str, str, float, float]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(suite, task) -> (a's mean, b's mean) over the task's paired episodes."""
    per: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for suite, task, a, b in pairs:
        per.setdefault((suite, task), []).append((a, b))
    return {k: (statistics.fmean(x for x, _ in v), statistics.fmean(y for _, y in v)) for k, v in per.items()}


def paired_episodes(runs_a: Iterable[Episodes], runs_b: Iterable[Episodes]) -> list[tuple[str, str, float, float]]:
    """(suite, task, a, b) for every episode both policies ran: same run, suite, sampling seed and task."""
    out = []
    for ea, eb in zip(runs_a, runs_b):
        for suite, sa in ea.items():
            sb = eb.get(suite, {})
            out += [(suite, task_of(k), float(v), float(sb[k])) for k, v in sa.items() if k in sb]
    return out


def sign_test(better: int, worse: int) -> float:
    """Two-sided exact sign test over the tasks that differ (1.0 when none differs)."""
    from scipy.stats import binomtest  # lazy: `score-distill --help` imports this module (via compare.study)

    n = better + worse
    return float(binomtest(better, n).pvalue) if n else 1.0


def bootstrap_ci(diffs: list[float], n_boot: int = 10_000, seed: int = 0) -> list[float] | None:
    """95% percentile interval of the mean of ``diffs`` (one per task), resampling tasks; None for no task."""
    if not diffs:
        return None
    d = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [float(lo), float(hi)]


def compare_tasks(a: str, b: str, horizon: Any, pairs: list[tuple[str, str, float, float]], *,
                  n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """The comparison record of ``a`` against ``b`` from their paired episodes (``paired_episodes``)."""
    means = task_means(pairs)
    diffs = [x - y for x, y in means.values()]
    better = sum(d > 0 for d in diffs)
    worse = sum(d < 0 for d in diffs)
    return {"a": a, "b": b, "horizon": horizon, "unit": "task", "n_tasks": len(diffs),
            "better": better, "worse": worse, "same": len(diffs) - better - worse,
            "p_value": sign_test(better, worse),
            "diff_mean": statistics.fmean(diffs) if diffs else None,
            "diff_ci95": bootstrap_ci(diffs, n_boot, seed)}
