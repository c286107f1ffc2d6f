"""Each policy's training compute and the teacher's cost, for the results table and the report's first screen.

``summary.json`` carries ``compute: {policy: {sft_steps, sft_tokens, rl_updates, rl_tokens}}`` when the pipeline
recorded it; for runs without it the figures are read back from what the stages left in the run directory
(``<stage>/train/train_result.json`` and the last checkpoint's ``trainer_state.json`` for SFT,
``score_rl/log.jsonl`` for RL). A policy's compute is everything that went into it: SCoRe-SFT continues from
BC init, so its steps include BC init's, and SCoRe-RL's include both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KEYS = ("sft_steps", "sft_tokens", "rl_updates", "rl_tokens")
# Which stages' training each policy carries, in order (a policy continues from the one before it).
LINEAGE = {"student_init": [], "bc_init": ["bc_init"], "bc_baseline": ["bc_baseline"],
           "score_sft": ["bc_init", "score_sft"], "score_rl": ["bc_init", "score_sft", "score_rl"]}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def sft_compute(train_dir: Path) -> dict[str, int] | None:
    """Optimizer steps, forwarded tokens (``sft_tokens``, padding excluded, as the pipeline's compute record counts
    them) and loss-bearing tokens (``sft_trained_tokens``) of one SFT stage; None when it did not train."""
    res = _read_json(train_dir / "train_result.json")
    if not isinstance(res, dict) or "steps" not in res:
        return None
    out = {"sft_steps": int(res["steps"])}
    # The trainer logs running counts; the final state (kept when the checkpoints are removed) or else the last
    # checkpoint holds the whole history.
    ckpts = sorted(train_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                   if p.name.split("-")[-1].isdigit() else -1)
    for state in [train_dir / "trainer_state.json", *(ck / "trainer_state.json" for ck in reversed(ckpts))]:
        history = (_read_json(state) or {}).get("log_history", [])
        restarted = False
        for key, name in (("num_tokens", "sft_tokens"), ("num_trained_tokens", "sft_trained_tokens")):
            counts = [e[key] for e in history if key in e]
            if counts:
                out[name] = int(counts[-1])
                restarted |= any(b < a for a, b in zip(counts, counts[1:]))
        if len(out) > 1:
            if res.get("tokens_seen"):  # the trainer's own count: exact, and never lagging the log
                out["sft_tokens"] = int(res["tokens_seen"])
            if restarted:
                # A running count that falls: the log restarted from zero at a resume (before the trainer restored
                # its counts), so its trained count covers only the steps after it; none is shown rather than that.
                out.pop("sft_trained_tokens", None)
            return out
    # No checkpoint left: one pass over the data per epoch.
    epochs = ((_read_json(train_dir / "sft_config.json") or {}).get("config") or {}).get("epochs") or 1
    return {**out, "sft_tokens": int(res.get("tokens_per_epoch", 0) * epochs),
            "sft_trained_tokens": int(res.get("trained_tokens_per_epoch", 0) * epochs)}


def rl_compute(rl_dir: Path) -> dict[str, int] | None:
    log = rl_dir / "log.jsonl"
    if not log.exists():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    # rl_updates: optimizer steps taken, as the pipeline's compute record counts them (a rollout batch without
    # reward spread takes none).
    return {"rl_updates": sum(int(r.get("optimizer_steps", 1)) for r in rows), "rl_batches": len(rows),
            "rl_tokens": sum(int(r.get("tokens", 0)) for r in rows)}


def stage_compute(run_dir: Path, stage: str) -> dict[str, int]:
    if stage == "score_rl":
        return rl_compute(run_dir / stage) or {}
    return sft_compute(run_dir / stage / "train") or {}


def policy_compute(summary: dict[str, Any], run_dir: Path | None = None) -> dict[str, dict[str, int]]:
    """``{policy: {sft_steps, sft_tokens, rl_updates, rl_tokens}}`` for every evaluated policy it can tell."""
    recorded = summary.get("compute") or {}
    out: dict[str, dict[str, int]] = {}
    for policy in summary.get("policies") or {}:
        if isinstance(recorded.get(policy), dict):
            out[policy] = dict(recorded[policy])
        elif policy in LINEAGE and run_dir is not None:
            total = {k: 0 for k in KEYS}
            for stage in LINEAGE[policy]:
                for k, v in stage_compute(Path(run_dir), stage).items():
                    if k in KEYS:
                        total[k] += v
            out[policy] = total
    return out


# Which stages' teacher work each policy learnt from (the BC baseline's trajectories include BC init's).
TEACHER_STAGES = {"bc_init": ["bc_init"], "bc_baseline": ["bc_baseline"], "score_sft": ["bc_init", "mps"],
                  "score_rl": ["bc_init", "mps"]}


def _tokens(t: dict[str, Any]) -> int:
    return int(t.get("tokens") or (t.get("prompt_tokens", 0) + t.get("completion_tokens", 0)))


def teacher_cost(summary: dict[str, Any]) -> dict[str, int]:
    """Teacher tokens (prompt + completion) behind each trained policy, from ``summary["teacher_tokens"]``."""
    stages = summary.get("teacher_tokens") or {}
    out = {}
    for policy, used in TEACHER_STAGES.items():
        if policy in (summary.get("policies") or {}) and all(s in stages for s in used):
            out[policy] = sum(_tokens(stages[s]) for s in used)
    return out


def run_teacher_tokens(summary: dict[str, Any]) -> int | None:
    """All teacher tokens the run spent (the BC baseline's solve re-uses BC init's trajectories)."""
    stages = summary.get("teacher_tokens") or {}
    if not stages:
        return None
    first = stages.get("bc_baseline") or stages.get("bc_init") or {}
    return _tokens(first) + (_tokens(stages["mps"]) if "mps" in stages else 0)
