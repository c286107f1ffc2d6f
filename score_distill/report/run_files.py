"""Reading the files of a run directory that the report shows.

Every file is optional: a stage that did not run left no file, and the report says "not run" for
it. A file that exists but cannot be read raises :class:`DataError` naming the file, the line (for
JSON Lines) and the field. The summary models ignore unknown keys on purpose: the pipeline may add
fields in later releases and an older report must still open the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import DataError, read_jsonl

SUMMARY_FILE = "summary.json"
MPS_FILE = "mps/trajectories.jsonl"
RL_LOG_FILE = "score_rl/log.jsonl"

# The order stages run in; the report lists policies in this order, any others after them.
POLICY_ORDER = ["teacher", "student_init", "bc_init", "bc_baseline", "score_sft", "score_rl"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SuiteResult(_Lenient):
    success_mean: float
    success_std: float = 0.0
    per_seed: list[float] = []
    mean_steps: float | None = None
    format_error_rate: float | None = None
    progress: float | None = None  # key steps right before the first error (built-in suites)
    n_tasks: int | None = None


class TeacherTokens(_Lenient):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retained: int = 0
    per_retained: float | None = None


class MPSStats(_Lenient):
    n_tasks: int | None = None
    corrections_hist: dict[str, int] = {}
    hard_to_teach: int | None = None
    failed: int | None = None
    first_error_hist: dict[str, int] = {}
    teacher_tokens_per_retained: float | None = None
    bc_teacher_tokens_per_retained: float | None = None


class StageInfo(_Lenient):
    seconds: float | None = None
    status: str = ""


class RunInfo(_Lenient):
    name: str = ""
    created: str | float | None = None
    config_path: str = ""
    seconds: float | None = None
    machine: str | dict[str, object] | None = None


class Summary(_Lenient):
    run: RunInfo = RunInfo()
    policies: dict[str, dict[str, SuiteResult]] = {}
    teacher_tokens: dict[str, TeacherTokens] = {}
    mps: MPSStats | None = None
    stages: dict[str, StageInfo] = {}
    compute: dict[str, dict[str, object]] = {}  # per policy: sft_steps, sft_tokens, rl_updates, rl_tokens, ...
    teacher_tokens_estimated: bool = False
    comparisons: list[dict[str, Any]] = []  # score_distill.compare.steps: each step of the chain, paired over tasks


class RLUpdate(_Lenient):
    step: int
    reward_mean: float
    reward_std: float = 0.0
    reasons: dict[str, float] = {}
    loss: float | None = None
    kl: float | None = None
    seconds: float | None = None


@dataclass
class RunFiles:
    """What was found in the run directory; ``None`` = file absent, ``errors`` = file unreadable."""

    run_dir: Path
    summary: Summary | None = None
    trajectories: list[Trajectory] | None = None
    rl_log: list[RLUpdate] | None = None
    errors: dict[str, str] = field(default_factory=dict)  # relative file name -> DataError message


def _field_error(path: Path, e: ValidationError, line: int | None = None) -> DataError:
    first = e.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "<record>"
    return DataError(path, line, f"field '{loc}': {first['msg']}")


def parse_summary(obj: object, path: Path | str = SUMMARY_FILE) -> Summary:
    """Validate a summary dict (as the pipeline writes it); errors name the field."""
    try:
        summary = Summary.model_validate(obj)
    except ValidationError as e:
        raise _field_error(Path(path), e) from None
    for pol, suites in summary.policies.items():
        for suite, r in suites.items():
            # Success rates are fractions; a percentage here would silently print as 5000 %.
            for name, v in (("success_mean", r.success_mean), ("success_std", r.success_std)):
                if not 0.0 <= v <= 1.0:
                    raise DataError(
                        path, None, f"field 'policies.{pol}.{suite}.{name}': {v} is not a fraction in [0, 1]")
    return summary


def read_summary(path: Path) -> Summary:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise DataError(path, None, f"invalid UTF-8 at byte {e.start}") from None
    return parse_summary(obj, path)


def load_run(run_dir: Path) -> RunFiles:
    """Read what exists; a file that fails to parse is recorded in ``errors``, the others still load."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, None, "run directory not found")
    rf = RunFiles(run_dir)
    readers = [
        (SUMMARY_FILE, "summary", read_summary),
        (MPS_FILE, "trajectories", lambda p: read_jsonl(p, Trajectory)),
        (RL_LOG_FILE, "rl_log", lambda p: read_jsonl(p, RLUpdate)),
    ]
    for rel, attr, reader in readers:
        path = run_dir / rel
        if not path.exists():
            continue
        try:
            setattr(rf, attr, reader(path))
        except DataError as e:
            rf.errors[rel] = str(e)
    if rf.summary is not None:
        rf.summary = with_steps(rf.summary, run_dir)
    return rf


def with_steps(summary: Summary, run_dir: Path) -> Summary:
    """The summary with its paired step comparisons, computed from RUN/eval for runs whose summary predates them."""
    if summary.comparisons or not summary.policies or not (Path(run_dir) / "eval").is_dir():
        return summary
    from score_distill.compare.steps import step_comparisons

    try:
        steps = step_comparisons(Path(run_dir) / "eval", summary.policies)
    except DataError:  # a damaged trajectory file: the table still shows, without the paired lines
        return summary
    return summary.model_copy(update={"comparisons": steps})


def mps_stats_from_trajectories(trajs: list[Trajectory]) -> MPSStats:
    """The MPS histograms recomputed from the trajectories, for runs whose summary lacks them.

    Buckets follow the paper's Fig. 3: a correct trajectory counts its correction rounds (0, 1, 2,
    3+); hard-to-teach and still-wrong ones are counted apart. The first error position is the
    0-based index of the first corrected step (0 = the plan).
    """
    hist = {"0": 0, "1": 0, "2": 0, "3+": 0}
    first: dict[str, int] = {}
    hard = failed = 0
    for t in trajs:
        if t.corrections:
            k = str(min(c.step_index for c in t.corrections))
            first[k] = first.get(k, 0) + 1
        if t.hard_to_teach:
            hard += 1
        elif not t.correct:
            failed += 1
        else:
            n = len(t.corrections)
            hist["3+" if n >= 3 else str(n)] += 1
    first = dict(sorted(first.items(), key=lambda kv: int(kv[0])))
    return MPSStats(n_tasks=len(trajs), corrections_hist=hist, hard_to_teach=hard, failed=failed,
                    first_error_hist=first)


def ordered_policies(names: list[str] | set[str]) -> list[str]:
    known = [p for p in POLICY_ORDER if p in names]
    return known + sorted(n for n in names if n not in POLICY_ORDER)


def ordered_suites(summary: Summary) -> list[str]:
    """Suites in order of first appearance across policies (dicts keep the file's order)."""
    seen: dict[str, None] = {}
    for suites in summary.policies.values():
        for s in suites:
            seen.setdefault(s, None)
    return list(seen)
