"""The report's plots, drawn with matplotlib and returned as inline SVG markup.

The object-oriented API (``Figure`` without pyplot) is used so the report never touches the
global backend or pyplot's figure registry of whoever calls it. SVG text stays text
(``svg.fonttype: none``): the page is smaller and the labels are selectable. Each figure gets its
own hash salt so ids are deterministic (same run -> same file) yet distinct between figures.
"""

from __future__ import annotations

import io
import re

import matplotlib
from matplotlib.figure import Figure

from score_distill.report.run_files import MPSStats, RLUpdate, Summary, ordered_suites

# Colour-blind-safe palette (Okabe & Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
STAGE_AXIS = ["student_init", "bc_init", "score_sft", "score_rl"]
REFERENCE_LINES = {"teacher": (0, (6, 3)), "bc_baseline": (0, (1, 2))}  # dash patterns

_RC = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}


def _to_svg(fig: Figure, name: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": name}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    # Inline SVG needs neither the XML declaration nor the DOCTYPE; start at the <svg> element.
    svg = svg[svg.index("<svg") :]
    return re.sub(r"<svg ", f'<svg role="img" aria-label="{name}" ', svg, count=1)


def _figure(w: float, h: float, ncols: int = 1) -> tuple[Figure, list]:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(w, h), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def success_by_stage(summary: Summary) -> str | None:
    """One line per suite across the student's stages; teacher and BC baseline as reference lines."""
    stages = [s for s in STAGE_AXIS if s in summary.policies]
    refs = [r for r in REFERENCE_LINES if r in summary.policies]
    suites = ordered_suites(summary)
    if not suites or not (stages or refs):
        return None
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(7.5, 3.8)
        xs = list(range(len(stages)))
        for i, suite in enumerate(suites):
            color = PALETTE[i % len(PALETTE)]
            pts = [(x, summary.policies[s][suite]) for x, s in zip(xs, stages) if suite in summary.policies[s]]
            if pts:
                ax.errorbar(
                    [p[0] for p in pts],
                    [100 * p[1].success_mean for p in pts],
                    yerr=[100 * p[1].success_std for p in pts],
                    marker="o", capsize=3, color=color, label=suite, lw=2,
                )
            for ref in refs:
                r = summary.policies[ref].get(suite)
                if r is not None:
                    ax.axhline(100 * r.success_mean, color=color, lw=1.2, alpha=0.8, linestyle=REFERENCE_LINES[ref])
        for ref in refs:  # legend entries for the line styles, in neutral grey
            ax.plot([], [], color="#555", lw=1.2, linestyle=REFERENCE_LINES[ref], label=ref)
        ax.set_xticks(xs, stages if stages else [])
        if len(xs) == 1:
            ax.set_xlim(-0.5, 0.5)
        ax.set_ylabel("success (%)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax.set_title("Success by stage (mean ± std over seeds)")
        return _to_svg(fig, "success-by-stage")


def _bars(ax, labels: list[str], values: list[float], color: str, title: str, xlabel: str) -> None:
    bars = ax.bar(labels, values, color=color)
    ax.bar_label(bars, labels=[f"{v:g}" for v in values], padding=2, fontsize=9)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tasks")
    ax.grid(axis="x", visible=False)
    ax.set_xlim(-0.6, max(len(labels), 4) - 0.4)  # a lone bar stays bar-sized, not axis-wide


def mps_histograms(mps: MPSStats) -> str | None:
    """Corrections per task and first-error position, side by side."""
    if not mps.corrections_hist and not mps.first_error_hist:
        return None
    with matplotlib.rc_context(_RC):
        fig, (a1, a2) = _figure(9, 3.2, ncols=2)
        corr = dict(mps.corrections_hist)
        labels = list(corr) + [k for k, v in (("hard", mps.hard_to_teach), ("failed", mps.failed)) if v is not None]
        values = list(corr.values()) + [v for v in (mps.hard_to_teach, mps.failed) if v is not None]
        bars = a1.bar(labels, values, color=[PALETTE[0]] * len(corr) + ["#999999"] * (len(labels) - len(corr)))
        a1.bar_label(bars, padding=2, fontsize=9)
        a1.set_title("Corrections per task")
        a1.set_xlabel("corrections needed (solved tasks) / unsolved")
        a1.set_ylabel("tasks")
        a1.grid(axis="x", visible=False)
        if mps.first_error_hist:
            keys = sorted(mps.first_error_hist, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
            _bars(a2, keys, [mps.first_error_hist[k] for k in keys], PALETTE[5],
                  "First critical error position", "step index (0 = plan)")
        else:
            a2.set_axis_off()
            a2.text(0.5, 0.5, "no first-error data", ha="center", va="center", transform=a2.transAxes)
        return _to_svg(fig, "mps-histograms")


def teacher_tokens_bar(values: dict[str, float]) -> str | None:
    """Teacher tokens per retained trajectory, e.g. {"MPS": x, "BC": y}."""
    if not values:
        return None
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(4.8, 2.9)
        labels = list(values)
        bars = ax.bar(labels, [values[k] for k in labels], color=PALETTE[: len(labels)], width=0.55)
        ax.bar_label(bars, labels=[f"{values[k]:,.0f}" for k in labels], padding=2, fontsize=9)
        ax.set_ylabel("teacher tokens / retained traj.")
        ax.set_title("Teacher cost per retained trajectory")
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.15)
        return _to_svg(fig, "teacher-tokens")


def rl_curves(log: list[RLUpdate]) -> str | None:
    """Reward mean ± std, the share of each reward reason (stacked), loss and KL, per update."""
    if not log:
        return None
    log = sorted(log, key=lambda u: u.step)
    steps = [u.step for u in log]
    with matplotlib.rc_context(_RC):
        fig, (a1, a2, a3) = _figure(11, 3.2, ncols=3)
        mean = [u.reward_mean for u in log]
        std = [u.reward_std for u in log]
        a1.plot(steps, mean, color=PALETTE[0], lw=2, marker="o" if len(steps) < 30 else None, ms=3)
        a1.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=PALETTE[0], alpha=0.2, lw=0)
        a1.set_title("Reward (mean ± std)")
        a1.set_xlabel("RL update")
        reasons: dict[str, None] = {}
        for u in log:
            for r in u.reasons:
                reasons.setdefault(r, None)
        if reasons:
            totals = [sum(u.reasons.values()) or 1 for u in log]
            shares = [[100 * u.reasons.get(r, 0) / t for u, t in zip(log, totals)] for r in reasons]
            a2.stackplot(steps, shares, labels=list(reasons), colors=PALETTE[: len(reasons)] * 2, alpha=0.85)
            a2.set_ylim(0, 100)
            a2.set_ylabel("% of rollouts")
            a2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False, fontsize=8)
        else:
            a2.text(0.5, 0.5, "no reward reasons logged", ha="center", va="center", transform=a2.transAxes)
        a2.set_title("Reward reasons")
        a2.set_xlabel("RL update")
        loss = [(u.step, u.loss) for u in log if u.loss is not None]
        kl = [(u.step, u.kl) for u in log if u.kl is not None]
        if loss:
            a3.plot([s for s, _ in loss], [v for _, v in loss], color=PALETTE[5], label="loss")
        if kl:
            a3b = a3.twinx()
            a3b.plot([s for s, _ in kl], [v for _, v in kl], color=PALETTE[2], label="KL", linestyle="--")
            a3b.set_ylabel("KL")
            a3b.grid(False)
            a3.plot([], [], color=PALETTE[2], linestyle="--", label="KL")  # in a3's legend
        if loss or kl:
            a3.legend(frameon=False, fontsize=8)
        a3.set_title("Loss and KL")
        a3.set_xlabel("RL update")
        return _to_svg(fig, "rl-curves")
