"""The results table for the terminal, printed by the CLI at the end of a run."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from score_distill.report.compute import policy_compute, run_teacher_tokens, teacher_cost
from score_distill.report.run_files import Summary, ordered_policies, ordered_suites, parse_summary
from score_distill.report.tables import CI_CAPTION, best_per_suite, count, pct, success_ci, suite_tasks


def render_summary_table(summary: Summary | dict[str, Any], *, width: int = 140, color: bool = False,
                         run_dir: str | Path | None = None) -> str:
    """Policies x suites: success % with a 95% interval over held-out tasks, then each policy's training compute
    and the teacher tokens behind it; the best of each suite is marked ``*`` (and bold in colour).

    ``summary`` is the parsed ``summary.json`` (dict or :class:`Summary`); ``run_dir`` lets the compute columns be
    read back from the stages' files when the summary does not record them. Returns plain text unless ``color``.
    """
    raw = summary.model_dump() if isinstance(summary, Summary) else summary
    s = summary if isinstance(summary, Summary) else parse_summary(summary)
    suites = ordered_suites(s)
    best = best_per_suite(s)
    compute = policy_compute(raw, Path(run_dir) if run_dir else None)
    teacher = teacher_cost(raw)
    title = f"SCoRe results: {s.run.name}" if s.run.name else "SCoRe results"
    graded = any(r.progress is not None for per in s.policies.values() for r in per.values())
    caption = CI_CAPTION + "; * best per suite"
    if graded:
        caption += "; {key steps right before the first error %}"
    caption += ("; training compute counts every stage a policy continues from (SCoRe-SFT includes BC init), "
                "tokens = those of the training sequences" if compute else "")
    total = run_teacher_tokens(raw)
    if total is not None:
        est = " (estimated: the oracle teacher's steps tokenized)" if raw.get("teacher_tokens_estimated") else ""
        caption += f"; the run's teacher cost: {total:,} tokens{est}"
    # Names go in as Text, never as strings: rich would read "[...]" in a run name as markup.
    table = Table(title=Text(title), caption=Text(caption))
    table.add_column("policy", style="bold")
    n_by_suite = suite_tasks(s)
    for suite in suites:
        table.add_column(Text(f"{suite}\n{n_by_suite[suite]} tasks"), justify="right")
    if compute:
        for head in ("SFT steps", "SFT tokens", "RL steps"):
            table.add_column(head, justify="right")
    if teacher:
        table.add_column("teacher tokens", justify="right")
    for pol in ordered_policies(set(s.policies)):
        row: list[Text | str] = [Text(pol)]
        for suite in suites:
            r = s.policies[pol].get(suite)
            if r is None:
                row.append("–")
                continue
            is_best = r.success_mean == best[suite]
            cell = success_ci(r, n_by_suite[suite]) + (" *" if is_best else "  ")
            if graded:
                cell += " {" + pct(r.progress, 0) + "}"
            row.append(Text(cell, style="bold green" if is_best else ""))
        if compute:
            c = compute.get(pol) or {}
            row += [count(v if isinstance(v := c.get(k), int | float) else None)
                    for k in ("sft_steps", "sft_tokens", "rl_updates")]
        if teacher:
            row.append(count(teacher.get(pol)))
        table.add_row(*row, style="dim" if pol in ("teacher", "bc_baseline") else None)
    if not s.policies:
        table.add_row("(no evaluation results)")
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system="standard" if color else None, force_terminal=color,
                      highlight=False)
    console.print(table)
    for heading, lines in step_groups(raw.get("comparisons") or []):
        console.print(Text(heading + ":"))
        for line in lines:
            console.print(Text("  " + line))
    return buf.getvalue()


def step_groups(comparisons: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The records of ``compare.steps`` as (heading, lines): the method's chain, then SCoRe against the BC
    baseline; each line reads ``math@H2: score_sft vs bc_init: +30 points [...]``."""
    from score_distill.compare.steps import CHAIN, REFERENCES, describe

    groups = [("Each step against the one before it, paired over the same held-out tasks", CHAIN),
              ("SCoRe against the BC baseline, paired over the same held-out tasks", REFERENCES)]
    out = []
    for heading, pairs in groups:
        lines = [f"{c['suite']}: {describe(c)}" for c in comparisons if (c["a"], c["b"]) in pairs]
        if lines:
            out.append((heading, lines))
    return out
