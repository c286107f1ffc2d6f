"""Evaluation: success rate (or F1) of a policy per suite, mean and spread over sampling seeds.

Each (suite, seed) result file is written atomically when complete, so an interrupted evaluation
resumes at the first missing file and never mixes a partial run into the figures. Sampling is seeded
per (suite, sampling seed, task): a resumed evaluation writes what an uninterrupted one would have, however the
remaining jobs are batched. Every policy draws from the same per-episode seeds (common random numbers), so
two policies compared on one task differ by their weights, not by their draws: two copies of one model give
the same episodes, and the paired per-task comparisons are not blurred by sampling noise the policies share.
``eval.common_seeds: false`` puts the policy's name in the seed (independent draws, as records before it).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from score_distill.agent.loop import AgentConfig, EpisodeStart, Scorer, ToolsFor, run_episodes
from score_distill.models.base import Policy, SamplingParams
from score_distill.tasks.judge import AnswerJudge, JudgeConfig, apply_judge
from score_distill.teachers.oracle import verified_progress
from score_distill.trajectory import Task, Trajectory
from score_distill.utils.jsonl import read_jsonl, write_jsonl
from score_distill.utils.seeds import derive_seed


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="Sampling seeds; mean ± std over them.")
    sampling: SamplingParams = Field(
        default_factory=SamplingParams, description="Paper defaults: T=0.6, top_p=0.95, top_k=20, rep. penalty 1.1."
    )
    benchmarks: list[str] = Field(default_factory=list, description="Paper benchmarks to evaluate on (names or paths).")
    max_benchmark_tasks: int | None = Field(None, description="Cap per benchmark (None = all).")
    judge: JudgeConfig | None = Field(
        None, description="LLM answer judge for the benchmarks the paper scores by 'accuracy (LLM judge)' "
        "(math and deep search); exact match and math-verify decide first. None: deterministic checks only.")
    policies: list[str] = Field(
        default_factory=lambda: ["teacher", "student_init", "bc_init", "bc_baseline", "score_sft", "score_rl"],
        description="Which policies the pipeline evaluates.",
    )
    common_seeds: bool = Field(
        True, description="Every policy samples each held-out episode from the same seed (suite, sampling seed, "
        "task): common random numbers, so paired comparisons see the policies' difference, not their draws'. "
        "False: the policy's name is part of the seed (independent draws).")


def metrics(per_seed: list[list[Trajectory]]) -> dict[str, Any]:
    """Success mean ± std over seeds, mean steps and format-error rate over all episodes; for tasks
    with a ground-truth solution (built-in suites), the mean share of key steps right before the
    first critical error (``progress``: graded where success is all-or-nothing)."""
    rates = [statistics.fmean(t.score for t in trajs) if trajs else 0.0 for trajs in per_seed]
    everything = [t for trajs in per_seed for t in trajs]
    steps = sum(len(t.steps) for t in everything)
    bad_steps = sum(1 for t in everything for s in t.steps if s.format_errors)
    out: dict[str, Any] = {
        "success_mean": statistics.fmean(rates) if rates else 0.0,
        "success_std": statistics.stdev(rates) if len(rates) > 1 else 0.0,
        "per_seed": rates,
        "mean_steps": steps / len(everything) if everything else 0.0,
        "format_error_rate": bad_steps / steps if steps else 0.0,
        "finished_rate": (sum(t.finished for t in everything) / len(everything)) if everything else 0.0,
        "n_tasks": len(per_seed[0]) if per_seed else 0,
    }
    progress = [verified_progress(t) for t in everything]
    if everything and None not in progress:
        out["progress"] = statistics.fmean(progress)
    return out


class Job(tuple):
    """One (suite, sampling seed) to run: unpacks as ``(tasks, seed)``, as runners have always taken it,
    and names its suite in ``.suite`` (part of every episode's sampling seed)."""

    suite: str

    def __new__(cls, tasks: list[Task], seed: int, suite: str = "") -> Job:
        job = super().__new__(cls, (tasks, seed))
        job.suite = suite
        return job


RunJobs = Callable[[list[Job]], list[list[Trajectory]]]


def evaluate_policy(
    run_jobs: RunJobs,
    suites: dict[str, list[Task]],
    seeds: list[int],
    out_dir: Path,
    *,
    judge: AnswerJudge | None = None,
) -> dict[str, dict[str, Any]]:
    """Every (suite, seed) not yet on disk runs through ``run_jobs`` in ONE call, so a local model
    decodes all of them in the same batches (small suites x seeds would otherwise mean many tiny
    batches). Each result file is then written whole; finished files are reused.

    With a ``judge``, answers of judge-scored benchmarks are scored by it when the figures are computed
    (the files keep the sandbox's deterministic scores); its verdicts are cached on disk, so a resumed
    or repeated evaluation asks it nothing twice."""
    paths = {(suite, seed): out_dir / suite / f"seed{seed}.jsonl" for suite in suites for seed in seeds}
    missing = [key for key, path in paths.items() if not path.exists()]
    if missing:
        for key, trajs in zip(missing, run_jobs([Job(suites[k[0]], k[1], k[0]) for k in missing])):
            write_jsonl(paths[key], trajs)
    out = {}
    for suite in suites:
        per_seed = [read_jsonl(paths[(suite, seed)], Trajectory) for seed in seeds]
        counts = apply_judge([t for trajs in per_seed for t in trajs], judge) if judge is not None else None
        out[suite] = metrics(per_seed)
        if counts:
            out[suite]["judge"] = counts
    return out


def policy_runner(
    policy: Policy, pool: Any, agent: AgentConfig, sampling: SamplingParams, *, tools_for: ToolsFor | None = None,
    scorer: Scorer | None = None, label: str = "eval", common_seeds: bool = True,
) -> RunJobs:
    """Every episode samples from its own generator seeded by (suite, sampling seed, task id), and by the
    policy's name too without ``common_seeds``, so its trajectory does not depend on which other jobs run with
    it. On a policy with a rollout engine all jobs run as one set of episodes (one batch); a policy without one
    (a server) runs job by job, its rounds seeded by (suite, seed) (and the name), so a job's result depends
    only on the job."""
    own = () if common_seeds else (policy.name,)

    def seeded(job: Job) -> list[EpisodeStart]:
        tasks, s = job
        suite = getattr(job, "suite", "")
        return [EpisodeStart(t, id=f"eval-{s}-{t.id}", seed=derive_seed(*own, suite, s, t.id)) for t in tasks]

    def run(jobs: list[Job]) -> list[list[Trajectory]]:
        if getattr(policy, "rollout_engine", None) is not None:
            # The episode seeds decide the sampling; the config seed is only a marker that sampling is seeded.
            cfg = agent.model_copy(update={"sampling": sampling.model_copy(update={"seed": 0})})
            trajs = run_episodes(policy, [st for job in jobs for st in seeded(job)], pool, cfg,
                                 tools_for=tools_for, scorer=scorer, progress=label)
            out, k = [], 0
            for tasks, _ in jobs:
                out.append(trajs[k : k + len(tasks)])
                k += len(tasks)
            return out
        out = []
        for job in jobs:
            seed = derive_seed(*own, getattr(job, "suite", ""), job[1]) % 2**31
            cfg = agent.model_copy(update={"sampling": sampling.model_copy(update={"seed": seed})})
            out.append(run_episodes(policy, seeded(job), pool, cfg, tools_for=tools_for, scorer=scorer,
                                    progress=label))
        return out

    return run
