"""Each step of a run's chain of policies against the one it continues from, paired over the held-out tasks.

A run's table gives each policy's success with an interval of its own; whether a step helped is a paired
question (the same tasks, the same seeds), which those intervals answer poorly at 20 tasks. These records
answer it per suite with ``score_distill.compare.stats`` (sign test over tasks, task-resampled 95% interval).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from score_distill.compare.stats import compare_tasks, paired_episodes

# (policy, the one it continues from): the chain of the method
CHAIN: list[tuple[str, str]] = [("bc_init", "student_init"), ("score_sft", "bc_init"), ("score_rl", "score_sft")]
# (policy, the reference it is set against), where the run trains the BC baseline
REFERENCES: list[tuple[str, str]] = [("score_sft", "bc_baseline"), ("score_rl", "bc_baseline")]
STEPS = CHAIN + REFERENCES


def episode_scores(eval_dir: Path, policies: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{policy: {suite: {"seed<s>/<task id>": score}}}`` from the evaluation's trajectory files."""
    from score_distill.trajectory import Trajectory
    from score_distill.utils.jsonl import read_jsonl

    out: dict[str, dict[str, dict[str, float]]] = {}
    for policy, per_suite in policies.items():
        for suite in per_suite:
            for f in sorted((eval_dir / policy / suite).glob("seed*.jsonl")):
                scores = out.setdefault(policy, {}).setdefault(suite, {})
                scores.update({f"{f.stem}/{t.task.id}": t.score for t in read_jsonl(f, Trajectory)})
    return out


def step_comparisons(eval_dir: Path, policies: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per (step of ``STEPS`` whose two policies were evaluated, suite): ``compare_tasks``' fields
    (``a``, ``b``, ``n_tasks``, ``better``, ``worse``, ``same``, ``p_value``, ``diff_mean``, ``diff_ci95``) and
    ``suite``."""
    return episode_comparisons(episode_scores(eval_dir, policies))


def episode_comparisons(episodes: dict[str, dict[str, dict[str, float]]],
                        steps: list[tuple[str, str]] = STEPS) -> list[dict[str, Any]]:
    """``step_comparisons`` from episode scores in ``episode_scores``' form (e.g. pooled over several held-out
    streams), for the pairs of ``steps``."""
    out = []
    suites = list(dict.fromkeys(suite for per in episodes.values() for suite in per))
    for suite in suites:
        for a, b in steps:
            if suite not in episodes.get(a, {}) or suite not in episodes.get(b, {}):
                continue
            pairs = paired_episodes([{suite: episodes[a][suite]}], [{suite: episodes[b][suite]}])
            if pairs:
                rec = compare_tasks(a, b, None, pairs)
                rec.pop("horizon")
                out.append({"suite": suite, **rec})
    return out


def describe(c: dict[str, Any]) -> str:
    """``score_sft vs bc_init: +30 points [+0, +55]; better on 8 tasks, worse on 2 (sign test p = 0.11)``."""
    ci = c.get("diff_ci95")
    span = f" [{100 * ci[0]:+.0f}, {100 * ci[1]:+.0f}]" if ci else ""
    tasks = "task" if c["better"] == 1 else "tasks"
    return (f"{c['a']} vs {c['b']}: {100 * (c.get('diff_mean') or 0.0):+.0f} points{span}; better on "
            f"{c['better']} {tasks}, worse on {c['worse']} (sign test p = {c['p_value']:.2g})")
