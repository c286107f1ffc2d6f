"""The HTML report and the terminal table, checked on the HTML text (the browser checks are in
test_report_chromium.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html import unescape

import pytest
from test_report_rundir import HOSTILE_CODE, HOSTILE_QUESTION, HOSTILE_THOUGHT, SUITES, make_run_dir, make_summary

from score_distill.report import render_summary_table, write_report
from score_distill.report.browser_data import embed_json, select_trajectories
from score_distill.report.run_files import load_run, mps_stats_from_trajectories, parse_summary
from score_distill.utils.jsonl import DataError, append_jsonl, write_atomic, write_json


def _traj_json(html: str) -> list[dict]:
    m = re.search(r'<script type="application/json" id="traj-data">(.*?)</script>', html, re.S)
    assert m, "embedded trajectory block missing"
    return json.loads(m.group(1))


def _sections(html: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([a-z-]+)">(.*?)</section>', html, re.S))


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = make_run_dir(tmp_path_factory.mktemp("full") / "run")
    return run, write_report(run).read_text(encoding="utf-8")


def test_full_report_has_every_section_and_plot(full_report):
    run, html = full_report
    secs = _sections(html)
    assert set(secs) == {"results", "by-stage", "mps", "tokens", "rl", "browser", "run"}
    assert all("not run" not in body for body in secs.values()), [k for k, v in secs.items() if "not run" in v]
    for sid in ("by-stage", "mps", "tokens", "rl"):
        assert secs[sid].count("<svg") == 1, sid
    assert "<text" in secs["rl"] and "repeated_mistake" in secs["rl"]  # labels stay text in the SVG
    assert len(_traj_json(html)) == 25


def test_report_is_self_contained(full_report):
    _, html = full_report
    # Namespace URIs inside SVG are identifiers, never fetched; anything loadable is a src/href/url()/@import.
    assert not re.search(r'\s(?:src|href|xlink:href|action)\s*=\s*["\']?\s*(?:https?:|//|file:)', html, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:|//)", html, re.I)
    assert "@import" not in html and "<link" not in html and "<iframe" not in html
    assert all(src.startswith("data:") for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', html))


def test_content_security_policy_admits_exactly_the_pages_scripts(full_report):
    _, html = full_report
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 2
    hashes = re.findall(r"'sha256-([^']+)'", csp)
    assert sorted(hashes) == sorted(base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts)
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_best_per_column_is_highlighted(full_report):
    _, html = full_report
    table = re.search(r'<table class="results">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    rows = dict(re.findall(r"<tr(?: class=\"ref\")?><th>([^<]+)</th>(.*?)</tr>", table, re.S))
    best = {pol: [bool(re.match(r'<td class="best"', c)) for c in re.findall(r"<td[^>]*>", cells)]
            for pol, cells in rows.items()}
    # The fixture puts the teacher ahead on search@H4 and score_rl ahead on both math suites.
    assert best["teacher"] == [False, False, True]
    assert best["score_rl"] == [True, True, False]
    assert sum(sum(v) for v in best.values()) == len(SUITES)
    assert list(rows) == ["teacher", "student_init", "bc_init", "bc_baseline", "score_sft", "score_rl"]


def test_model_written_markup_is_escaped_everywhere(full_report):
    _, html = full_report
    for hostile in ("<script>alert(1)</script>", "<script>document.body", "<img src=x", "<svg onload", "<b>bold</b>"):
        assert hostile not in html
    assert len(re.findall(r"<script\b", html, re.I)) == 3  # onerror guard, data block, page JS
    assert "&lt;demo&gt;" in html  # the run name is config text, escaped too
    by_id = {t["id"]: t for t in _traj_json(html)}
    hostile = by_id["traj-0024"]  # round-trips exactly: escaping is lossless
    assert hostile["question"] == HOSTILE_QUESTION
    assert hostile["steps"][1]["thought"] == HOSTILE_THOUGHT and hostile["steps"][1]["code"] == HOSTILE_CODE


def test_embed_json_cannot_close_its_script_block():
    obj = {"a": "</script><!-- <script>&amp;", "b": ["</SCRIPT >", "\u2028"]}
    text = embed_json(obj)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == obj


def test_missing_files_render_not_run_notes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    secs = _sections(write_report(empty).read_text())
    assert len(secs) == 7 and all('class="note not-run"' in body for body in secs.values())

    only_summary = make_run_dir(tmp_path / "s", n_trajectories=0, with_rl=False)
    html = write_report(only_summary).read_text()
    secs = _sections(html)
    assert "not run" in secs["rl"] and "not run" in secs["browser"] and "not run" in secs["mps"]
    assert "not run" not in secs["results"] and secs["by-stage"].count("<svg") == 1
    assert _traj_json(html) == []


def test_unreadable_files_are_named_and_the_rest_still_renders(tmp_path, caplog):
    run = make_run_dir(tmp_path / "run")
    path = run / "mps" / "trajectories.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    bad = json.loads(lines[2])
    bad["steps"][0]["origin"] = "oracle"
    write_atomic(path, "".join(lines[:2] + [json.dumps(bad) + "\n"] + lines[3:]))
    summary = make_summary(None)
    summary["policies"]["bc_init"]["math@H4"]["success_mean"] = 41.2  # a percentage where a fraction belongs
    write_json(run / "summary.json", summary)

    html = write_report(run).read_text()
    secs = _sections(html)
    assert "trajectories.jsonl:3: field &#x27;steps.0.origin&#x27;" in secs["browser"]
    assert "policies.bc_init.math@H4.success_mean" in secs["results"]
    assert secs["rl"].count("<svg") == 1  # untouched by the other files' problems
    assert any("trajectories.jsonl:3" in r.getMessage() for r in caplog.records)


def test_summary_errors_name_the_field():
    s = make_summary(None)
    s["policies"]["teacher"]["math@H8"]["success_mean"] = "high"
    with pytest.raises(DataError, match=r"policies\.teacher\.math@H8\.success_mean"):
        parse_summary(s)
    with pytest.raises(DataError, match="run directory not found"):
        load_run(__import__("pathlib").Path("/nonexistent/run"))


def test_mps_stats_fall_back_to_the_trajectories(tmp_path):
    run = make_run_dir(tmp_path / "run", with_mps_in_summary=False)
    rf = load_run(run)
    expected = make_summary(rf.trajectories)["mps"]  # counted independently by the fixture
    got = mps_stats_from_trajectories(rf.trajectories)
    assert got.corrections_hist == expected["corrections_hist"] == {"0": 9, "1": 4, "2": 4, "3+": 0}
    assert got.first_error_hist == expected["first_error_hist"] == {"1": 8, "2": 4}
    assert (got.hard_to_teach, got.failed, got.n_tasks) == (4, 4, 25)
    assert "Source: mps/trajectories.jsonl" in _sections(write_report(run).read_text())["mps"]


def test_trajectory_cap_keeps_the_instructive_ones(tmp_path):
    run = make_run_dir(tmp_path / "run", n_trajectories=0, with_rl=False)
    from test_report_rundir import make_trajectories

    trajs = make_trajectories(330)
    append_jsonl(run / "mps" / "trajectories.jsonl", trajs)
    html = write_report(run).read_text()
    items = _traj_json(html)
    assert len(items) == 300 and "Showing 300 of 331 trajectories" in html
    n_instructive = sum(bool(t.corrections) or t.hard_to_teach for t in trajs)
    assert sum(bool(i["corrections"]) or i["hard_to_teach"] for i in items) == n_instructive
    kept = select_trajectories(trajs, 300)
    assert [t.id for t in kept] == [i["id"] for i in items] == sorted(i["id"] for i in items)  # file order


def test_terminal_table():
    from score_distill.report.results import wilson

    s = make_summary(None)
    text = render_summary_table(s, width=100)
    assert "\x1b[" not in text
    for name in ("teacher", "student_init", "bc_init", "bc_baseline", "score_sft", "score_rl", *SUITES):
        assert name in text
    rl = s["policies"]["score_rl"]["math@H4"]
    lo, hi = wilson(rl["success_mean"], rl["n_tasks"])
    assert f"{100 * rl['success_mean']:.1f} [{100 * lo:.1f}–{100 * hi:.1f}] *" in text
    assert len(re.findall(r"\d\] \*", text)) == len(SUITES)
    assert f"{rl['n_tasks']} tasks" in text and "Wilson interval over the held-out tasks" in text
    for per in s["policies"].values():
        for r in per.values():
            r.pop("n_tasks", None)
    assert f"{100 * rl['success_mean']:.1f} *" in render_summary_table(s, width=160)  # no count: no interval
    assert "\x1b[" in render_summary_table(s, color=True)
    assert "no evaluation results" in render_summary_table({})
    s["run"]["name"] = "[red]x[/red] [bold]"  # rich markup in a name is text, not style (nor a MarkupError)
    assert "[red]x[/red] [bold]" in render_summary_table(s, width=200)


def test_report_html_reads_back_as_text(full_report):
    """Smoke check that the visible header carries the run's facts (escaped)."""
    _, html = full_report
    header = unescape(re.search(r'<div class="meta">(.*?)</div>', html, re.S).group(1))
    assert "configs/cpu_smoke.yaml" in header and "1 h 27 min" in header and "torch: 2.13.0+cpu" in header


def test_command_line_entry(tmp_path, capsys):
    from score_distill.report.__main__ import main

    run = make_run_dir(tmp_path / "run", n_trajectories=6, with_rl=False)
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert f"report: {run / 'report.html'}" in out and "score_rl" in out and (run / "report.html").exists()
    assert main([str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_terminal_table_shows_progress_when_the_run_has_it():
    from score_distill.report.terminal import render_summary_table

    base = {"run": {"name": "r"}, "policies": {"teacher": {"math@H2": {"success_mean": 1.0}},
                                               "score_sft": {"math@H2": {"success_mean": 0.0}}}}
    assert "key steps" not in render_summary_table(base)
    base["policies"]["score_sft"]["math@H2"]["progress"] = 0.375
    text = render_summary_table(base)
    assert "key" in text and "{38}" in text and "{–}" in text
