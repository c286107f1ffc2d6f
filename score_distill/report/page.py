"""``write_report(run_dir)``: one self-contained HTML file that a researcher opens after a run.

No external URL anywhere: plots are inline SVG, CSS and JS are inlined, the trajectories are an
embedded JSON block. A Content-Security-Policy allows only the page's own two scripts (by hash),
so even markup that slipped into the page could not run or fetch anything. Missing files give a
"not run" note; unreadable ones an error box naming file, line and field (and a logged warning),
and the rest of the report still renders.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import platform
import re
from datetime import UTC, datetime
from html import escape
from importlib import resources
from pathlib import Path

from score_distill.report import plots, tables
from score_distill.report.browser_data import browser_payload
from score_distill.report.compute import policy_compute, run_teacher_tokens, teacher_cost
from score_distill.report.run_files import (
    MPS_FILE,
    RL_LOG_FILE,
    SUMMARY_FILE,
    RunFiles,
    Summary,
    load_run,
    mps_stats_from_trajectories,
)
from score_distill.utils.jsonl import write_atomic

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
ONERROR_JS = (
    "window.onerror=function(m,s,l){var v=String(m)+' (line '+l+')';"
    "document.documentElement.setAttribute('data-jserror',v);"
    "if(document.body)document.body.setAttribute('data-jserror',v);};"
)


def _asset(name: str) -> str:
    return resources.files("score_distill.report").joinpath(name).read_text(encoding="utf-8")


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def _not_run(what: str) -> str:
    return f'<p class="note not-run">not run: {escape(what)}</p>'


def _error(rf: RunFiles, rel: str) -> str:
    msg = rf.errors.get(rel)
    return f'<div class="error-box">could not read {escape(rel)}:\n{escape(msg)}</div>' if msg else ""


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{escape(title)}</h2>{body}</section>'


def _figure(svg: str | None, caption: str) -> str:
    if svg is None:
        return ""
    return f'<figure class="plot">{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def _created(c: str | float | None) -> str:
    if c is None or c == "":
        return "–"
    if isinstance(c, int | float):
        return datetime.fromtimestamp(c, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(c)


def _machine(m: str | dict | None) -> str:
    if m is None:
        return "not recorded"
    if isinstance(m, dict):
        return ", ".join(f"{k}: {v}" for k, v in m.items())
    return str(m)


def _meta(s: Summary | None, run_dir: Path) -> str:
    run = s.run if s else None
    items = [
        ("run dir", str(run_dir)),
        ("created", _created(run.created) if run else "–"),
        ("config", (run.config_path or "–") if run else "–"),
        ("total time", tables.fmt_seconds(run.seconds) if run else "–"),
        ("machine", _machine(run.machine) if run else "not recorded"),
        ("report built", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC") + f" on {platform.node() or '?'}"),
    ]
    return "".join(f"<span>{escape(k)}: <b>{escape(v)}</b></span>" for k, v in items)


def _results(rf: RunFiles) -> str:
    s = rf.summary
    if s is None or not s.policies:
        body = _error(rf, SUMMARY_FILE) or _not_run(
            f"no evaluation results ({SUMMARY_FILE} absent or without 'policies')")
        return _section("results", "Results", body)
    raw = s.model_dump()
    compute, teacher = policy_compute(raw, rf.run_dir), teacher_cost(raw)
    total = run_teacher_tokens(raw)
    cost = ""
    if total is not None:
        est = " (estimated: the oracle teacher's steps tokenized)" if s.teacher_tokens_estimated else ""
        cost = f"The run's teacher cost: <b>{total:,}</b> tokens{est}. "
    body = (
        f'<p class="note">{escape(tables.CI_CAPTION)}, on each evaluation suite; the best of each column is '
        "highlighted. Teacher and behaviour-cloning baseline (italic) are references. Hover a cell for the task "
        "count, per-seed values, mean steps and format-error rate.</p>"
        + tables.results_table(s)
        + (f'<p class="note">{cost}Training compute per policy counts every stage it continues from '
           "(SCoRe-SFT includes BC init); tokens are those of the training sequences; teacher tokens are those of "
           "the trajectories it learnt from.</p>"
           + tables.compute_table(s, compute, teacher) if compute or teacher else "")
        + _steps(s)
        + "<details><summary>all numbers</summary>" + tables.details_table(s) + "</details>"
    )
    return _section("results", "Results", body)


def _steps(s: Summary) -> str:
    from score_distill.report.terminal import step_groups

    return "".join(
        f'<p class="note">{escape(heading)} (difference in points with a task-resampled 95% interval; sign test '
        "over the tasks that differ):</p><ul>" + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>"
        for heading, lines in step_groups(s.comparisons))


def _by_stage(rf: RunFiles) -> str:
    svg = plots.success_by_stage(rf.summary) if rf.summary else None
    if svg is None:
        return _section("by-stage", "Success by stage", _error(rf, SUMMARY_FILE) or _not_run("no evaluated stages"))
    cap = ("Student after each stage: initial, BC init (cold start), SCoRe-SFT, SCoRe-RL. Horizontal lines: teacher "
           "(dashed) and behaviour-cloning baseline (dotted), in the colour of their suite.")
    return _section("by-stage", "Success by stage", _figure(svg, cap))


def _mps(rf: RunFiles) -> str:
    s = rf.summary
    mps = s.mps if s and s.mps else None
    source = SUMMARY_FILE
    if mps is None and rf.trajectories:
        mps, source = mps_stats_from_trajectories(rf.trajectories), MPS_FILE
    err = _error(rf, SUMMARY_FILE) + _error(rf, MPS_FILE)
    if mps is None:
        return _section("mps", "Mentored problem solving", err or _not_run(f"no MPS statistics ({MPS_FILE} absent)"))
    kpis = [("tasks", mps.n_tasks), ("hard to teach", mps.hard_to_teach), ("failed after corrections", mps.failed)]
    kpi_html = "".join(
        f'<div class="kpi"><b>{"–" if v is None else v}</b><span>{escape(k)}</span></div>' for k, v in kpis)
    svg = plots.mps_histograms(mps)
    cap = ("Left: solved tasks by the number of teacher corrections they needed, then hard-to-teach (teacher could "
           "not locate the error) and still-wrong tasks. Right: where the first critical error was (0-based step "
           f"index; 0 = the plan). Source: {source}.")
    body = err + f'<div class="kpis">{kpi_html}</div>' + (_figure(svg, cap) if svg else _not_run("no histograms"))
    return _section("mps", "Mentored problem solving", body)


def _tokens(rf: RunFiles) -> str:
    s = rf.summary
    values: dict[str, float] = {}
    if s and s.mps:
        if s.mps.teacher_tokens_per_retained is not None:
            values["MPS (SCoRe)"] = s.mps.teacher_tokens_per_retained
        if s.mps.bc_teacher_tokens_per_retained is not None:
            values["BC (full teacher traj.)"] = s.mps.bc_teacher_tokens_per_retained
    if not values and s:  # fall back to the per-stage accounting
        values = {k: v.per_retained for k, v in s.teacher_tokens.items() if v.per_retained is not None}
    if not values and not (s and s.teacher_tokens):
        return _section("tokens", "Teacher cost", _error(rf, SUMMARY_FILE) or _not_run("no teacher token accounting"))
    cap = ("Teacher tokens (prompt + completion) spent per trajectory kept for training. MPS pays for reviews and "
           "single-step corrections; BC pays for whole teacher solutions, rejected ones included.")
    body = '<div class="row">' + _figure(plots.teacher_tokens_bar(values), cap)
    if s and s.teacher_tokens:
        body += "<div>" + tables.teacher_tokens_table(s.teacher_tokens) + "</div>"
    return _section("tokens", "Teacher cost", body + "</div>")


def _rl(rf: RunFiles) -> str:
    if not rf.rl_log:
        body = _error(rf, RL_LOG_FILE) or _not_run(f"SCoRe-RL ({RL_LOG_FILE} absent or empty)")
        return _section("rl", "SCoRe-RL", body)
    last = max(rf.rl_log, key=lambda u: u.step)
    cap = (f"{len(rf.rl_log)} updates; last reward {last.reward_mean:.3f} ± {last.reward_std:.3f}. Reasons: the "
           "key-step reward's cases (correct answer, matched the teacher's step, repeated the student's mistake, "
           "avoided it, no final answer), as a share of each update's rollouts.")
    return _section("rl", "SCoRe-RL", _figure(plots.rl_curves(rf.rl_log), cap))


def _browser(rf: RunFiles) -> tuple[str, str]:
    """(section html, embedded JSON)."""
    if not rf.trajectories:
        body = _error(rf, MPS_FILE) or _not_run(f"mentored problem solving ({MPS_FILE} absent or empty)")
        return _section("browser", "MPS trajectories", body), "[]"
    data, shown, total = browser_payload(rf.trajectories)
    cap_note = ""
    if shown < total:
        cap_note = (f'<p class="note">Showing {shown} of {total} trajectories (corrected and hard-to-teach ones '
                    f"first); all of them are in {escape(MPS_FILE)}.</p>")
    body = cap_note + (
        '<div class="browser"><div class="side"><div class="controls">'
        '<select id="traj-filter" aria-label="filter"><option value="all">all</option>'
        '<option value="corrected">corrected</option><option value="hard">hard to teach</option>'
        '<option value="uncorrected">solved without help / other</option></select>'
        '<input id="traj-search" type="search" placeholder="search question, id, answer" aria-label="search">'
        '<span id="traj-count"></span></div><ul id="traj-list"></ul></div>'
        '<div id="traj-detail"></div></div>'
    )
    return _section("browser", "MPS trajectories", body), data


def _run_section(rf: RunFiles) -> str:
    s = rf.summary
    if s is None or not s.stages:
        return _section("run", "Run", _error(rf, SUMMARY_FILE) or _not_run("no stage records"))
    return _section("run", "Run", tables.stages_table(s.stages))


def build_html(rf: RunFiles) -> str:
    named = rf.summary and rf.summary.run.name
    title = f"score-distill report: {rf.summary.run.name}" if named else "score-distill report"
    browser_html, traj_json = _browser(rf)
    sections = "\n".join([_results(rf), _by_stage(rf), _mps(rf), _tokens(rf), _rl(rf), browser_html, _run_section(rf)])
    js = _asset("report.js")
    if re.search(r"</script", js + ONERROR_JS, re.I):  # would end the inline block early
        raise ValueError("report.js must not contain '</script'")
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src {_csp_hash(ONERROR_JS)} {_csp_hash(js)}; base-uri 'none'; form-action 'none'")
    parts = {
        "CSP": csp, "TITLE": escape(title), "ONERROR_JS": ONERROR_JS, "CSS": _asset("report.css"),
        "META": _meta(rf.summary, rf.run_dir), "SECTIONS": sections, "TRAJ_JSON": traj_json, "JS": js,
    }
    # One pass, so a placeholder-like string inside inserted content is never substituted again.
    return re.sub(r"@@([A-Z_]+)@@", lambda m: parts[m.group(1)], _asset("template.html"))


def write_report(run_dir: Path | str) -> Path:
    """Write ``RUN_DIR/report.html`` from whatever the run produced; returns its path."""
    run_dir = Path(run_dir)
    rf = load_run(run_dir)
    for rel, msg in rf.errors.items():
        log.warning("report: skipping unreadable %s: %s", rel, msg)
    out = run_dir / REPORT_FILE
    write_atomic(out, build_html(rf))
    return out
