"""RUN/summary.json: what a run measured, read from its stages' records."""

from __future__ import annotations

import json
from typing import Any

from score_distill.compare.steps import step_comparisons
from score_distill.pipeline import compute
from score_distill.pipeline.stages import POLICY_STAGES, STAGE_NAMES


def policy_compute(ctx: Any) -> dict[str, dict[str, Any]]:
    """Each trained policy's training compute from the untrained student (``compute``); zero for the student."""
    out: dict[str, dict[str, Any]] = {"student_init": compute.zero()}
    for name in POLICY_STAGES:
        st = ctx.run.state(name) or {}
        if st.get("compute") is not None and st.get("model"):
            out[name] = st["compute"]
    return out


def summary(ctx: Any) -> dict[str, Any]:
    cfg, run = ctx.cfg, ctx.run
    results_path = run.stage_dir("eval") / "results.json"
    policies = json.loads(results_path.read_text()) if results_path.exists() else {}
    steps = step_comparisons(results_path.parent, policies) if policies else []
    teacher_tokens: dict[str, Any] = {}
    for stage in ("bc_init", "bc_baseline"):
        st = run.state(stage)
        if st and st.get("teacher"):
            teacher_tokens[stage] = st["teacher"]
    mps = (run.state("mps") or {}).get("stats")
    if mps:
        teacher_tokens["mps"] = {"calls": mps["teacher_calls"], "tokens": mps["teacher_tokens"],
                                 "prompt_tokens": mps.get("teacher_prompt_tokens", 0),
                                 "completion_tokens": mps.get("teacher_completion_tokens", 0),
                                 "retained": mps["retained"], "per_retained": mps["teacher_tokens_per_retained"]}
        bc = teacher_tokens.get("bc_baseline") or teacher_tokens.get("bc_init")
        mps = {**mps, "bc_teacher_tokens_per_retained": bc.get("per_retained") if bc else None}
    stages = {}
    for s in STAGE_NAMES:
        st = run.state(s)
        stages[s] = {"status": st["status"], "seconds": st["seconds"]} if st else {"status": "not run"}
        if st and st.get("skipped"):
            stages[s]["skipped"] = st["skipped"]
        if st and st.get("peak_rss_gb") is not None:
            stages[s]["peak_rss_gb"] = st["peak_rss_gb"]
    manifest = run.manifest()
    return {
        "run": {"name": cfg.name, "created": manifest.get("created"), "preset": ctx.preset,
                "seconds": round(sum(v.get("seconds", 0) for v in stages.values()), 1),
                "machine": manifest.get("machine"), "teacher": cfg.teacher.kind,
                "student": cfg.student.model},
        "policies": policies,
        "comparisons": steps,
        "compute": policy_compute(ctx),
        "teacher_tokens": teacher_tokens,
        "teacher_tokens_estimated": cfg.teacher.kind == "oracle",
        "mps": mps,
        "stages": stages,
    }
