"""HTML tables of the report: results (policies x suites), stages, teacher tokens.

Every value that comes from a file goes through :func:`html.escape`: policy and suite names are
config-chosen, but a report must stay safe whatever the file holds.
"""

from __future__ import annotations

from html import escape

from score_distill.report.results import wilson
from score_distill.report.run_files import (
    StageInfo,
    SuiteResult,
    Summary,
    TeacherTokens,
    ordered_policies,
    ordered_suites,
)

CI_CAPTION = ("success % [95% Wilson interval over the held-out tasks; each task's success is first averaged over "
              "the sampling seeds]")


def best_per_suite(summary: Summary) -> dict[str, float]:
    """Highest success_mean of each suite over all policies (ties: every policy at it is best)."""
    best: dict[str, float] = {}
    for suites in summary.policies.values():
        for suite, r in suites.items():
            best[suite] = max(best.get(suite, r.success_mean), r.success_mean)
    return best


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def suite_tasks(summary: Summary) -> dict[str, int | None]:
    """Held-out tasks per suite (the largest count any policy reports: every policy sees the same tasks)."""
    out: dict[str, int | None] = {}
    for per in summary.policies.values():
        for suite, r in per.items():
            out[suite] = max(out.get(suite) or 0, r.n_tasks or 0) or None
    return out


def success_ci(r: SuiteResult, n: int | None = None) -> str:
    """``38.0 [22.1–55.3]``: the mean success with its 95% Wilson interval over ``n`` distinct tasks."""
    n = r.n_tasks or n
    if not n:
        return pct(r.success_mean)
    lo, hi = wilson(r.success_mean, n)
    return f"{pct(r.success_mean)} [{pct(lo)}–{pct(hi)}]"


def count(x: int | float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def results_table(summary: Summary) -> str:
    suites = ordered_suites(summary)
    best = best_per_suite(summary)
    n = suite_tasks(summary)
    head = "".join(f"<th>{escape(s)}" + (f'<span class="n"> ({n[s]} tasks)</span>' if n.get(s) else "") + "</th>"
                   for s in suites)
    rows = []
    for pol in ordered_policies(set(summary.policies)):
        cells = []
        for suite in suites:
            r = summary.policies[pol].get(suite)
            if r is None:
                cells.append('<td class="na">–</td>')
                continue
            tip = [f"n_tasks: {r.n_tasks}" if r.n_tasks is not None else "",
                   f"per seed: {', '.join(pct(v) for v in r.per_seed)}" if r.per_seed else "",
                   f"mean steps: {r.mean_steps:.2f}" if r.mean_steps is not None else "",
                   f"format error rate: {pct(r.format_error_rate)} %" if r.format_error_rate is not None else "",
                   f"key steps right before the first error: {pct(r.progress)} %" if r.progress is not None else ""]
            cls = ' class="best"' if r.success_mean == best[suite] else ""
            cells.append(f'<td{cls} title="{escape(" | ".join(t for t in tip if t))}">'
                         f'{pct(r.success_mean)}<span class="pm"> {_ci(r)}</span></td>')
        ref = ' class="ref"' if pol in ("teacher", "bc_baseline") else ""
        rows.append(f"<tr{ref}><th>{escape(pol)}</th>{''.join(cells)}</tr>")
    return (f'<table class="results"><thead><tr><th>policy</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _ci(r: SuiteResult) -> str:
    if not r.n_tasks:
        return ""
    lo, hi = wilson(r.success_mean, r.n_tasks)
    return f"[{pct(lo)}–{pct(hi)}]"


def compute_table(summary: Summary, compute: dict[str, dict[str, int]], teacher: dict[str, int]) -> str:
    """Per policy: held-out tasks, optimizer steps and trained tokens (SFT, RL) and the teacher tokens behind it."""
    rows = []
    for pol in ordered_policies(set(summary.policies)):
        if pol not in compute and pol not in teacher:
            continue
        c = compute.get(pol) or {}
        n = sum(r.n_tasks or 0 for r in summary.policies[pol].values())
        cells = [n, *(c.get(k) if isinstance(c.get(k), int | float) else None
                      for k in ("sft_steps", "sft_tokens", "rl_updates", "rl_tokens")), teacher.get(pol)]
        rows.append(f"<tr><th>{escape(pol)}</th>" + "".join(f"<td>{count(v)}</td>" for v in cells) + "</tr>")
    return ('<table class="compute"><thead><tr><th>policy</th><th>held-out tasks</th><th>SFT steps</th>'
            "<th>SFT tokens</th><th>RL steps</th><th>RL tokens</th><th>teacher tokens</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def details_table(summary: Summary) -> str:
    """One row per (policy, suite) with everything the summary holds."""
    rows = []
    for pol in ordered_policies(set(summary.policies)):
        for suite, r in summary.policies[pol].items():
            rows.append(
                f"<tr><td>{escape(pol)}</td><td>{escape(suite)}</td>"
                f"<td>{pct(r.success_mean)} ± {pct(r.success_std)}</td>"
                f"<td>{escape(', '.join(pct(v) for v in r.per_seed))}</td>"
                f"<td>{'–' if r.mean_steps is None else f'{r.mean_steps:.2f}'}</td>"
                f"<td>{pct(r.format_error_rate)}</td><td>{'–' if r.progress is None else pct(r.progress)}</td>"
                f"<td>{'–' if r.n_tasks is None else r.n_tasks}</td></tr>"
            )
    return ('<table class="details"><thead><tr><th>policy</th><th>suite</th><th>success %</th><th>per seed %</th>'
            "<th>mean steps</th><th>format errors %</th><th>key steps before first error %</th><th>tasks</th>"
            "</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def stages_table(stages: dict[str, StageInfo]) -> str:
    rows = []
    for name, st in stages.items():
        status = st.status or "–"
        ok, bad = status in ("done", "ok", "completed", "skipped-cached"), status in ("failed", "error")
        cls = "ok" if ok else ("bad" if bad else "")
        rows.append(f'<tr><td>{escape(name)}</td><td class="status {cls}">{escape(status)}</td>'
                    f"<td>{fmt_seconds(st.seconds)}</td></tr>")
    return ('<table class="stages"><thead><tr><th>stage</th><th>status</th><th>time</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def teacher_tokens_table(tokens: dict[str, TeacherTokens]) -> str:
    rows = []
    for stage, t in tokens.items():
        per = "–" if t.per_retained is None else f"{t.per_retained:,.0f}"
        rows.append(f"<tr><td>{escape(stage)}</td><td>{t.calls:,}</td><td>{t.prompt_tokens:,}</td>"
                    f"<td>{t.completion_tokens:,}</td><td>{t.retained:,}</td><td>{per}</td></tr>")
    return ('<table class="tokens"><thead><tr><th>stage</th><th>calls</th><th>prompt tokens</th>'
            "<th>completion tokens</th><th>retained</th><th>tokens / retained</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
