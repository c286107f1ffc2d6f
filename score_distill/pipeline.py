"""The whole SCoRe run: tasks -> BC init (+ baseline) -> MPS -> split -> SCoRe-SFT -> SCoRe-RL -> eval -> report.

A run lives in one directory::

    RUN/manifest.json            resolved config, seed, package versions, git revision, machine, and the
                                 history of every command run in the folder (a resumed run's stages come from several)
    RUN/<stage>/stage.json       written last, atomically: the stage is done (seconds, outputs)
    RUN/tasks/{train,eval,bc,mps}.jsonl
    RUN/bc_init/teacher_trajectories.jsonl, RUN/bc_init/model/
    RUN/bc_baseline/teacher_trajectories.jsonl, RUN/bc_baseline/model/
    RUN/mps/trajectories.jsonl, RUN/mps/stats.json
    RUN/split/{sft,rl}.jsonl
    RUN/score_sft/model/, RUN/score_rl/model/, RUN/score_rl/log.jsonl
    RUN/eval/<policy>/<suite>/seed<k>.jsonl, RUN/eval/results.json
    RUN/summary.json, RUN/report.html

Every stage is idempotent: a finished stage (its ``stage.json``) is skipped; an interrupted one
resumes from what it durably wrote (teacher trajectories and MPS chunks are append-only, trainer
checkpoints resume, evaluation files are written whole). ``--from``/``--to`` rerun a range: the
old outputs of rerun stages are moved to ``RUN/.trash/`` rather than deleted.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from score_distill.config import ConfigError, RunConfig, dump_config
from score_distill.stages.split import unit_hash
from score_distill.trajectory import Task, Trajectory
from score_distill.utils.jsonl import read_jsonl, write_atomic, write_json, write_jsonl

STAGES = ["tasks", "bc_init", "bc_baseline", "mps", "split", "score_sft", "score_rl", "eval", "report"]
POLICY_MODELS = {"bc_init": "bc_init", "bc_baseline": "bc_baseline", "score_sft": "score_sft", "score_rl": "score_rl"}
console = Console(stderr=True)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("score-distill", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "openai",
                "math-verify", "bm25s", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_revision() -> str | None:
    src = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def config_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted fields where two dumped configs differ, as ``field: old -> new``: a user told only that
    "the config differs" cannot tell an intended override from a typo."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += config_changes(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.') or 'config'}: {old!r} -> {new!r}"]


def _machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


class Pipeline:
    def __init__(self, cfg: RunConfig, run_dir: Path, *, preset: str = "default"):
        self.cfg = cfg
        self.dir = Path(run_dir)
        self.preset = preset
        self._pool = None
        self._teacher = None
        self._search = None
        # Models trained outside the stage list (the study's ablations) that the eval stage should also score.
        self.extra_policies: dict[str, str] = {}
        self._manifest_written = False

    # ----- run directory
    def stage_dir(self, stage: str) -> Path:
        return self.dir / stage

    def stage_state(self, stage: str) -> dict[str, Any] | None:
        p = self.stage_dir(stage) / "stage.json"
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a torn marker cannot happen (atomic write); treat anything odd as not done

    def stage_finished(self, stage: str) -> bool:
        """Done, and still done under this configuration: a stage skipped because it was switched off is owed
        once it is switched on (the study turns the BC baseline off for a run made in pieces, then on)."""
        st = self.stage_state(stage)
        if not st:
            return False
        section = getattr(self.cfg, stage, None)
        return not (st.get("skipped") == "disabled" and getattr(section, "enabled", False))

    def _mark_done(self, stage: str, seconds: float, **info: Any) -> None:
        write_json(self.stage_dir(stage) / "stage.json", {"status": "done", "seconds": round(seconds, 2), **info})

    def write_manifest(self) -> None:
        # Once per command: a caller that runs the stages in several calls (the study) is one resumption, not many.
        if self._manifest_written:
            return
        self._manifest_written = True
        manifest = {
            "name": self.cfg.name,
            "preset": self.preset,
            "seed": self.cfg.seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": sys.argv,
            "config": self.cfg.model_dump(mode="json"),
            "versions": _versions(),
            "git_revision": _git_revision(),
            "machine": _machine(),
        }
        # Every command that worked in this folder, in order: a resumed run's figures come from all of them,
        # so "command"/"git_revision" (the latest) alone would misstate how its earlier stages were made.
        keys = ("created", "command", "git_revision")
        this = {k: manifest[k] for k in keys}
        history = [this]
        path = self.dir / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text())
            if changes := config_changes(old.get("config"), manifest["config"]):
                shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
                # Escaped: a value such as "[0, 1]" would otherwise be read as rich markup.
                console.print(f"[yellow]note: the config differs from this run directory's manifest ({escape(shown)}); "
                              "finished stages are kept (use --from STAGE to redo them).[/]")
            manifest["created"] = old.get("created", manifest["created"])
            manifest["resumed"] = old.get("resumed", 0) + 1
            history = old.get("history") or [{k: old.get(k) for k in keys}]
            history.append(this)
        manifest["history"] = history
        write_json(path, manifest)
        write_atomic(self.dir / "config.yaml", dump_config(self.cfg))

    def trash(self, stages: list[str]) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for s in stages:
            d = self.stage_dir(s)
            if d.exists():
                dest = self.dir / ".trash" / f"{s}-{stamp}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(d), str(dest))

    # ----- shared resources
    @property
    def pool(self):
        if self._pool is None:
            from score_distill.sandbox import SandboxPool

            self._pool = SandboxPool(self.cfg.sandbox, max_workers=min(8, max(2, os.cpu_count() or 2)))
        return self._pool

    @property
    def teacher(self):
        if self._teacher is None:
            from score_distill.teachers.factory import make_teacher

            self._teacher = make_teacher(self.cfg, self.pool, tools_for=self.tools_for)
        return self._teacher

    def tools_for(self, task: Task) -> dict[str, Callable[..., str]]:
        from score_distill.tasks.registry import tools_for

        if self._search is None and self.cfg.search.kind != "none":
            from score_distill.tasks.search_factory import make_search

            self._search = make_search(self.cfg.search, self.dir / "search_cache.jsonl")
        return tools_for(task, search=self._search)

    def check_teacher_endpoint(self) -> None:
        """Fail fast, before any work, when the teacher's endpoint cannot be reached."""
        from score_distill.models.openai_compat import OpenAIPolicy
        from score_distill.user_errors import EndpointError

        tc = self.cfg.teacher
        if not tc.base_url or not tc.model:
            raise ConfigError("teacher.kind is 'llm' but teacher.base_url or teacher.model is not set")
        err = OpenAIPolicy(tc.base_url, tc.model, api_key_env=tc.api_key_env, timeout_s=min(tc.timeout_s, 15),
                           max_retries=0).ping()
        if err:
            raise EndpointError(f"teacher endpoint {tc.base_url} is not reachable: {err}")

    def load_policy(self, model: str | Path, name: str):
        from score_distill.models.hf import TransformersPolicy

        device = None if self.cfg.student.device == "auto" else self.cfg.student.device
        return TransformersPolicy(str(model), name=name, batch_size=self.cfg.student.batch_size, device=device)

    def model_of(self, stage: str) -> str | None:
        st = self.stage_state(stage)
        return st.get("model") if st else None

    # ----- stages
    def run(self, from_stage: str | None = None, to_stage: str | None = None) -> dict[str, Any]:
        for s in (from_stage, to_stage):
            if s is not None and s not in STAGES:
                raise ConfigError(f"unknown stage '{s}' (stages: {', '.join(STAGES)})")
        i0 = STAGES.index(from_stage) if from_stage else 0
        i1 = STAGES.index(to_stage) if to_stage else len(STAGES) - 1
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_manifest()
        if from_stage:
            self.trash(STAGES[i0 : i1 + 1])
        if self.cfg.teacher.kind == "llm" and any(not self.stage_finished(s) for s in STAGES[i0 : i1 + 1]):
            self.check_teacher_endpoint()
        try:
            for stage in STAGES[i0 : i1 + 1]:
                if self.stage_finished(stage):
                    console.print(f"[dim]- {stage}: done, skipped[/]")
                    continue
                console.rule(f"[bold]{stage}")
                t0 = time.perf_counter()
                info = getattr(self, f"stage_{stage}")() or {}
                self._mark_done(stage, time.perf_counter() - t0, **info)
                gc.collect()
        finally:
            self.close()
        return self.summary()

    def close(self) -> None:
        """Release the sandbox pool; the teacher holds it, so it goes too (both are rebuilt on demand)."""
        if self._pool is not None:
            self._pool.close()
        self._pool = None
        self._teacher = None

    def _tasks(self, name: str) -> list[Task]:
        return read_jsonl(self.stage_dir("tasks") / f"{name}.jsonl", Task)

    def stage_tasks(self) -> dict[str, Any]:
        from score_distill.tasks.contamination import dedupe_against_eval
        from score_distill.tasks.registry import make_tasks

        tc = self.cfg.tasks
        train: list[Task] = []
        evals: list[Task] = []
        for suite in tc.suites:
            for h in tc.horizons:
                key = f"{suite}@H{h}"
                for t in make_tasks(suite, tc.n_train, h, tc.train_seed, split="train"):
                    t.meta["suite_key"] = key
                    train.append(t)
                for t in make_tasks(suite, tc.n_eval, h, tc.eval_seed, split="eval"):
                    t.meta["suite_key"] = key
                    evals.append(t)
        if tc.seed_files:
            from score_distill.tasks.benchmarks import load_benchmark

            for f in tc.seed_files:
                for t in load_benchmark(f):
                    t.meta.setdefault("suite_key", Path(f).stem)
                    train.append(t)
        bench: list[Task] = []
        if self.cfg.eval.benchmarks:
            from score_distill.tasks.benchmarks import load_benchmark

            for b in self.cfg.eval.benchmarks:
                tasks = load_benchmark(b)
                if self.cfg.eval.max_benchmark_tasks:
                    tasks = tasks[: self.cfg.eval.max_benchmark_tasks]
                for t in tasks:
                    t.meta["suite_key"] = Path(b).stem
                bench.extend(tasks)
        removed_report: dict[str, Any] = {}
        if tc.dedupe_against_eval:
            train, report = dedupe_against_eval(train, evals + bench)
            removed_report = report.to_dict()
            console.print(report.summary())
        bc = [t for t in train if unit_hash(self.cfg.seed, "bc", t.id) < self.cfg.bc.share]
        bc_ids = {t.id for t in bc}
        mps = [t for t in train if t.id not in bc_ids]
        d = self.stage_dir("tasks")
        write_jsonl(d / "train.jsonl", train)
        write_jsonl(d / "eval.jsonl", evals + bench)
        write_jsonl(d / "bc.jsonl", bc)
        write_jsonl(d / "mps.jsonl", mps)
        write_json(d / "dedupe.json", removed_report)
        console.print(f"train {len(train)} (BC {len(bc)}, MPS {len(mps)}), eval {len(evals) + len(bench)}")
        return {"n_train": len(train), "n_eval": len(evals) + len(bench), "n_bc": len(bc), "n_mps": len(mps)}

    def train_sft(self, stage: str, base_model: str, records: list[Trajectory], sft_cfg) -> dict[str, Any]:
        """SFT ``base_model`` on ``records`` into ``RUN/<stage>/train`` (resumable). Public so that
        extensions train their own variants the way the stages do (the study's equal-budget BC)."""
        from score_distill.training.sft import NothingToTrain, NoTrainedToken
        from score_distill.training.sft import train_sft as run_sft

        if not records:
            console.print(f"[yellow]{stage}: no training data; the model is unchanged.[/]")
            return {"model": base_model, "trained": False, "n_records": 0}
        try:
            res = run_sft(self.resolve_model(base_model), records, self._with_tracking(sft_cfg),
                            self.stage_dir(stage) / "train")
        except NothingToTrain as e:
            console.print(f"[yellow]{stage}: {e}; the model is unchanged.[/]")
            return {"model": base_model, "trained": False, "n_records": len(records), "untrained_only": True}
        except NoTrainedToken:
            key = {"bc_init": "bc.sft", "bc_baseline": "bc_baseline.sft", "score_sft": "score_sft.sft"}.get(stage, stage)
            raise ConfigError(f"{stage}: all {len(records)} training trajectories are cut before their first "
                              f"assistant turn at {key}.max_length={sft_cfg.max_length}; raise it") from None
        if res.n_untrained_steps:
            console.print(f"{stage}: {res.n_untrained_steps} student steps with format errors kept as context, "
                          "not trained (sft.train_malformed_student_steps)")
        return {"model": str(res.model_dir), "trained": True, "n_records": len(records),
                "untrained_steps": res.n_untrained_steps,
                "final_loss": res.losses[-1] if getattr(res, "losses", None) else None}

    def _with_tracking(self, sft_cfg):
        """TensorBoard always; W&B or trackio when asked for and installed (a warning, not an error, if not)."""
        import importlib.util

        if sft_cfg.report_to != "auto":
            return sft_cfg
        tr = self.cfg.tracking
        for flag, module in (("wandb", "wandb"), ("trackio", "trackio")):
            if getattr(tr, flag):
                if importlib.util.find_spec(module):
                    return sft_cfg.model_copy(update={"report_to": flag})
                console.print(f"[yellow]tracking.{flag} is on but the '{module}' package is not installed; "
                              "logging to TensorBoard only.[/]")
        return sft_cfg.model_copy(update={"report_to": "tensorboard" if tr.tensorboard else "none"})

    def resolve_model(self, model: str) -> str:
        from score_distill.models.hf import resolve_student_path

        return resolve_student_path(model)

    def stage_bc_init(self) -> dict[str, Any]:
        from score_distill.stages.bc import rejection_sample, solve_resumable, teacher_cost

        trajs = solve_resumable(self.teacher, self._tasks("bc"), self.stage_dir("bc_init") / "teacher_trajectories.jsonl")
        kept = rejection_sample(trajs)
        console.print(f"teacher solved {len(kept)}/{len(trajs)} BC tasks correctly")
        info = self.train_sft("bc_init", self.cfg.student.model, kept, self.cfg.bc.sft)
        return {**info, "teacher": teacher_cost(trajs)}

    def baseline_teacher_trajectories(self) -> list[Trajectory]:
        """The teacher's trajectories on every training task (resumable), in task order."""
        from score_distill.stages.bc import solve_resumable
        from score_distill.utils.jsonl import append_jsonl

        path = self.stage_dir("bc_baseline") / "teacher_trajectories.jsonl"
        if not path.exists():  # reuse the BC-init teacher trajectories: same teacher, same tasks
            append_jsonl(path, read_jsonl(self.stage_dir("bc_init") / "teacher_trajectories.jsonl", Trajectory))
        return solve_resumable(self.teacher, self._tasks("train"), path)

    def stage_bc_baseline(self) -> dict[str, Any]:
        from score_distill.stages.bc import rejection_sample, teacher_cost

        if not self.cfg.bc_baseline.enabled:
            return {"model": None, "skipped": "disabled"}
        trajs = self.baseline_teacher_trajectories()
        kept = rejection_sample(trajs)
        info = self.train_sft("bc_baseline", self.cfg.student.model, kept, self.cfg.bc_baseline.sft)
        return {**info, "teacher": teacher_cost(trajs)}

    def stage_mps(self) -> dict[str, Any]:
        from score_distill.stages.mps import failure_cause, mps_statistics, run_mps, teacher_unreachable

        student = self.load_policy(self.model_of("bc_init") or self.cfg.student.model, "bc_init")
        out = self.stage_dir("mps") / "trajectories.jsonl"
        tasks = self._tasks("mps")
        records = run_mps(student, self.teacher, tasks, self.pool, self.cfg.agent, self.cfg.mps, out,
                          seed=self.cfg.seed, tools_for=self.tools_for,
                          on_chunk=lambda i, n: console.print(f"MPS chunk {i}/{n} written"))
        del student
        stats = mps_statistics(records)
        write_json(self.stage_dir("mps") / "stats.json", stats)
        console.print(f"MPS: {stats['status']}")
        unreachable = [r for r in records if teacher_unreachable(r)]
        if unreachable and self.cfg.mps.retry_failed:
            from score_distill.models.openai_compat import describe_transient
            from score_distill.user_errors import EndpointError

            causes = collections.Counter(failure_cause(r.meta["failure"]).split(": ")[-1] for r in unreachable)
            raise EndpointError(
                f"MPS: {len(unreachable)} of {len(records)} tasks failed because the teacher "
                f"{describe_transient(causes)} (first: {unreachable[0].meta['failure'][:300]}). "
                f"Every other record is kept in "
                f"{out}. Fix the endpoint and run the same command again: only those tasks are redone "
                "(or set mps.retry_failed=false to go on without them).")
        return {"stats": stats}

    def stage_split(self) -> dict[str, Any]:
        from score_distill.stages.split import split_mps

        records = read_jsonl(self.stage_dir("mps") / "trajectories.jsonl", Trajectory)
        sft, rl = split_mps(records, self.cfg.split, self.cfg.seed)
        write_jsonl(self.stage_dir("split") / "sft.jsonl", sft)
        write_jsonl(self.stage_dir("split") / "rl.jsonl", rl)
        return {"n_sft": len(sft), "n_rl": len(rl)}

    def stage_score_sft(self) -> dict[str, Any]:
        records = read_jsonl(self.stage_dir("split") / "sft.jsonl", Trajectory)
        base = self.model_of("bc_init") or self.cfg.student.model
        return self.train_sft("score_sft", base, records, self.cfg.score_sft.sft)

    def stage_score_rl(self) -> dict[str, Any]:
        from score_distill.rl.items import build_rl_items, save_items
        from score_distill.stages.rl import run_rl_stage

        base = self.model_of("score_sft") or self.model_of("bc_init") or self.cfg.student.model
        rl_half = read_jsonl(self.stage_dir("split") / "rl.jsonl", Trajectory)
        mps = read_jsonl(self.stage_dir("mps") / "trajectories.jsonl", Trajectory)
        rl_ids = {t.task.id for t in rl_half}
        sft_half_ids = {t.task.id for t in mps} - rl_ids
        items = build_rl_items(rl_half, sft_task_ids=sft_half_ids, config=self.cfg.rl.items)
        save_items(self.stage_dir("score_rl") / "items.jsonl", items)
        # An item whose prefix already uses every allowed step leaves nothing to roll out.
        too_deep = {it.id for it in items if not self.cfg.rl.long_horizon and len(it.prefix) >= self.cfg.rl.max_steps}
        items = [it for it in items if it.id not in too_deep]
        if not items:
            console.print("[yellow]score_rl: no RL items; the model is unchanged.[/]")
            return {"model": base, "trained": False, "n_items": 0}
        model_dir = run_rl_stage(self.resolve_model(base), items, self.cfg.rl, self.stage_dir("score_rl"),
                                 self.tools_for, None, pool=self.pool, progress="RL updates")
        self._tensorboard_rl()
        kinds: dict[str, int] = {}
        for it in items:
            kinds[it.kind] = kinds.get(it.kind, 0) + 1
        return {"model": str(model_dir), "trained": True, "n_items": len(items), "items_by_kind": kinds,
                "dropped_prefix_too_long": len(too_deep)}

    def eval_suites(self) -> dict[str, list[Task]]:
        suites: dict[str, list[Task]] = {}
        for t in self._tasks("eval"):
            suites.setdefault(t.meta.get("suite_key", t.source or "tasks"), []).append(t)
        return suites

    def policy_model(self, policy: str) -> str | None:
        if policy in self.extra_policies:
            return self.extra_policies[policy]
        if policy == "student_init":
            return self.cfg.student.model
        if policy in POLICY_MODELS:
            st = self.stage_state(POLICY_MODELS[policy])
            return st.get("model") if st else None
        return None

    def stage_eval(self, suites: dict[str, list[Task]] | None = None, eval_dir: Path | None = None) -> dict[str, Any]:
        """Every policy of ``cfg.eval.policies`` on the run's held-out tasks, or on ``suites`` with its files
        under ``eval_dir`` (another held-out set: the study's wider evaluation of trained policies)."""
        from score_distill.stages.evaluate import evaluate_policy, policy_runner

        own = suites is None
        suites = self.eval_suites() if own else suites
        eval_dir = self.stage_dir("eval") if eval_dir is None else eval_dir
        seeds = self.cfg.eval.seeds
        from score_distill.tasks.judge import make_answer_judge

        judge = make_answer_judge(self.cfg.eval.judge, eval_dir / "answer_judge_cache.jsonl")
        results: dict[str, Any] = {}
        for policy in self.cfg.eval.policies:
            out_dir = eval_dir / policy
            if policy == "teacher":
                teacher = self.teacher

                def run_teacher(jobs, _t=teacher) -> list[list[Trajectory]]:
                    return [_t.solve(tasks) for tasks, _seed in jobs]

                # A deterministic teacher (the oracle) gives the same trajectories for every seed.
                t_seeds = seeds if self.cfg.teacher.kind == "llm" else seeds[:1]
                results[policy] = evaluate_policy(run_teacher, suites, t_seeds, out_dir, judge=judge)
                continue
            model = self.policy_model(policy)
            if model is None:
                console.print(f"[dim]- {policy}: not trained in this run, not evaluated[/]")
                continue

            def run_policy(jobs, _model=model, _policy=policy) -> list[list[Trajectory]]:
                # Loaded only when some result file is missing (evaluate_policy reuses finished ones).
                pol = self.load_policy(_model, _policy)
                return policy_runner(pol, self.pool, self.cfg.agent, self.cfg.eval.sampling,
                                     tools_for=self.tools_for, label=f"eval {_policy}")(jobs)

            results[policy] = evaluate_policy(run_policy, suites, seeds, out_dir, judge=judge)
            gc.collect()
        old = eval_dir / "results.json"
        if old.exists():  # keep figures of policies evaluated earlier (e.g. by the study)
            results = {**json.loads(old.read_text()), **results}
        write_json(eval_dir / "results.json", results)
        if own:
            self._tensorboard_eval(results)
        return {"policies": sorted(results)}

    def _tensorboard_rl(self) -> None:
        log = self.stage_dir("score_rl") / "log.jsonl"
        if not self.cfg.tracking.tensorboard or not log.exists():
            return
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(self.dir / "tensorboard" / "score_rl"))
        for row in read_jsonl(log):
            for key in ("reward_mean", "reward_std", "loss", "kl", "clip_frac", "grad_norm", "groups_with_spread"):
                if isinstance(row.get(key), int | float):
                    w.add_scalar(f"rl/{key}", row[key], row["step"])
        w.close()

    def _tensorboard_eval(self, results: dict[str, Any]) -> None:
        if not self.cfg.tracking.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        w = SummaryWriter(str(self.dir / "tensorboard" / "eval"))
        for i, policy in enumerate(["student_init", "bc_init", "score_sft", "score_rl"]):
            for suite, m in results.get(policy, {}).items():
                w.add_scalar(f"success/{suite}", m["success_mean"], i)
        w.close()

    def stage_report(self) -> dict[str, Any]:
        summary = self.summary()
        write_json(self.dir / "summary.json", summary)
        from score_distill.report import write_report

        path = write_report(self.dir)
        return {"report": str(path)}

    # ----- summary
    def summary(self) -> dict[str, Any]:
        results_path = self.stage_dir("eval") / "results.json"
        policies = json.loads(results_path.read_text()) if results_path.exists() else {}
        teacher_tokens: dict[str, Any] = {}
        for stage in ("bc_init", "bc_baseline"):
            st = self.stage_state(stage)
            if st and st.get("teacher"):
                teacher_tokens[stage] = st["teacher"]
        mps = (self.stage_state("mps") or {}).get("stats")
        if mps:
            teacher_tokens["mps"] = {"calls": mps["teacher_calls"], "tokens": mps["teacher_tokens"],
                                     "prompt_tokens": mps.get("teacher_prompt_tokens", 0),
                                     "completion_tokens": mps.get("teacher_completion_tokens", 0),
                                     "retained": mps["retained"], "per_retained": mps["teacher_tokens_per_retained"]}
            bc = teacher_tokens.get("bc_baseline") or teacher_tokens.get("bc_init")
            mps = {**mps, "bc_teacher_tokens_per_retained": bc.get("per_retained") if bc else None}
        stages = {}
        for s in STAGES:
            st = self.stage_state(s)
            stages[s] = {"status": st["status"], "seconds": st["seconds"]} if st else {"status": "not run"}
        manifest_p = self.dir / "manifest.json"
        manifest = json.loads(manifest_p.read_text()) if manifest_p.exists() else {}
        return {
            "run": {"name": self.cfg.name, "created": manifest.get("created"), "preset": self.preset,
                    "seconds": round(sum(v.get("seconds", 0) for v in stages.values()), 1),
                    "machine": manifest.get("machine"), "teacher": self.cfg.teacher.kind,
                    "student": self.cfg.student.model},
            "policies": policies,
            "teacher_tokens": teacher_tokens,
            "teacher_tokens_estimated": self.cfg.teacher.kind == "oracle",
            "mps": mps,
            "stages": stages,
        }


def run_pipeline(cfg: RunConfig, run_dir: Path, *, preset: str = "default", from_stage: str | None = None,
                 to_stage: str | None = None) -> dict[str, Any]:
    return Pipeline(cfg, run_dir, preset=preset).run(from_stage, to_stage)
