"""The one line each pipeline stage leaves on the terminal, from its ``stage.json`` info and its files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from score_distill.report.compute import rl_compute, sft_compute
from score_distill.report.run_files import ordered_policies


def _lines(path: Path) -> int:
    try:
        with path.open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _n(k: int, noun: str, plural: str | None = None) -> str:
    return f"{k:,} {noun if k == 1 else plural or noun + 's'}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _teacher_tokens(t: dict[str, Any] | None) -> int:
    t = t or {}
    return int(t.get("tokens") or (t.get("prompt_tokens", 0) + t.get("completion_tokens", 0)))


def _sft(stage: str, info: dict[str, Any], run_dir: Path) -> str:
    if not info.get("trained", True) or info.get("model") is None:
        return "no training data; the model is unchanged"
    c = sft_compute(run_dir / stage / "train")
    if not c:
        return f"trained on {info.get('n_records', 0)} trajectories"
    loss = info.get("final_loss")
    trained = f" ({c['sft_trained_tokens']:,} trained)" if "sft_trained_tokens" in c else ""
    return (f"{_n(c['sft_steps'], 'optimizer step')}, {c.get('sft_tokens', 0):,} tokens{trained}, on "
            f"{info.get('n_records', 0)} trajectories" + (f"; final loss {loss:.3g}" if loss is not None else ""))


def _success(per_suite: dict[str, Any]) -> tuple[float, int]:
    """Success over every held-out task of a policy (suites weighted by their task counts)."""
    n = sum(m.get("n_tasks") or 0 for m in per_suite.values())
    if not n:
        return 0.0, 0
    return sum(m["success_mean"] * (m.get("n_tasks") or 0) for m in per_suite.values()) / n, n


def stage_line(stage: str, info: dict[str, Any], run_dir: Path) -> str:
    if info.get("skipped") == "disabled":
        return f"{stage}: off ({stage}.enabled=false)"
    if stage == "tasks":
        return (f"tasks: {info['n_train']} training ({info['n_bc']} for BC init, {info['n_mps']} for MPS), "
                f"{info['n_eval']} held-out")
    if stage in ("bc_init", "bc_baseline"):
        n = _lines(run_dir / stage / "teacher_trajectories.jsonl")
        t = info.get("teacher") or {}
        return (f"{stage}: teacher solved {t.get('retained', 0)}/{n} tasks ({_teacher_tokens(t):,} teacher tokens); "
                + _sft(stage, info, run_dir))
    if stage == "mps":
        st = info.get("stats") or {}
        status = st.get("status") or {}
        rest = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in status.items() if k != "solved_alone" and v)
        return (f"mps: {st.get('n_tasks', 0)} tasks, {status.get('solved_alone', 0)} solved alone"
                + (f", {rest}" if rest else "") + f"; {st.get('teacher_tokens', 0):,} teacher tokens")
    if stage == "split":
        return f"split: {info.get('n_sft', 0)} trajectories for SCoRe-SFT, {info.get('n_rl', 0)} for SCoRe-RL"
    if stage == "score_sft":
        return "score_sft: " + _sft(stage, info, run_dir)
    if stage == "score_rl":
        if not info.get("trained"):
            return "score_rl: no RL items; the model is unchanged"
        c = rl_compute(run_dir / "score_rl") or {}
        rows = [json.loads(x) for x in (run_dir / "score_rl" / "log.jsonl").read_text().splitlines() if x.strip()] \
            if (run_dir / "score_rl" / "log.jsonl").exists() else []
        reward = f", mean reward {rows[0]['reward_mean']:.2f} -> {rows[-1]['reward_mean']:.2f}" if rows else ""
        return (f"score_rl: {_n(c.get('rl_batches', 0), 'RL update')}"
                f", {_n(c.get('rl_updates', 0), 'optimizer step')} ({c.get('rl_tokens', 0):,} trained tokens) on "
                f"{info.get('n_items', 0)} items{reward}")
    if stage in ("bc_equal_budget", "bc_continued"):
        return f"{stage}: " + _sft(stage, info, run_dir)
    if stage in ("rl_sparse_reward", "rl_long_horizon"):
        c = rl_compute(run_dir / stage) or {}
        return f"{stage}: {_n(c.get('rl_updates', 0), 'RL optimizer step')} on {info.get('n_items', 0)} items"
    if stage == "eval":
        path = run_dir / "eval" / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        parts, n_all = [], 0
        for policy in ordered_policies(set(results)):
            p, n = _success(results[policy])
            n_all = max(n_all, n)
            parts.append(f"{policy} {_pct(p)}")
        return f"eval: success on {n_all} held-out tasks: " + ", ".join(parts) if parts else "eval: nothing evaluated"
    if stage == "report":
        return "report: summary.json and report.html written"
    return f"{stage}: done"
