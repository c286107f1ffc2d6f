"""The report in a real browser: headless Chromium runs the page's JS; we read the DOM it built.

Skipped when no Chromium is installed (CI installs Debian's ``chromium``). ``--dump-dom`` prints
the DOM after the load event, i.e. after the page's JS ran; the page marks success with
``<body data-ready="1">`` and an ``onerror`` guard writes ``data-jserror`` on any JS error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_rundir import make_run_dir

from score_distill.report import write_report


def _find_chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not found (/usr/bin/chromium or `chromium` on PATH): apt-get install chromium",
)


def _chromium(args: list[str], profile: Path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"chromium failed ({r.returncode}): {r.stderr[-2000:]}"
    return r.stdout


def dump_dom(report: Path, fragment: str, profile: Path) -> str:
    dom = _chromium(["--dump-dom", report.as_uri() + fragment], profile)
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    err = re.search(r'\sdata-jserror="[^"]*"', dom)  # the attribute; the guard's source names it too
    assert err is None, err.group(0)
    assert 'data-ready="1"' in body.group(0), "the page's JS did not finish"
    assert not re.search(r"\sdata-pwned=", dom), "model-written markup was executed"
    return dom


def _detail(dom: str) -> str:
    return re.search(r'<div id="traj-detail">(.*)</div></div></section>', dom, re.S).group(1)


def _list_ids(dom: str) -> list[str]:
    return re.findall(r'<a href="#traj=[^"]*" data-id="([^"]+)"', dom)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("chromium")
    return write_report(make_run_dir(base / "run")), base / "profile"


def test_plots_and_selected_trajectory_render(report):
    html, profile = report
    dom = dump_dom(html, "#traj=traj-0003", profile)  # solved after two corrections, the first made invalid
    assert len(re.findall(r"<svg\b", dom)) >= 4
    assert len(_list_ids(dom)) == 25
    assert re.search(r'<a href="#traj=traj-0003" data-id="traj-0003" class="active">', dom)
    detail = _detail(dom)
    cards = re.findall(r'<div class="step ([a-z ]+)" data-origin="(student|teacher)">', detail)
    # 2 corrections x (rejected + chosen) + 3 steps of the final trajectory
    assert len(cards) == 7
    assert sum("rejected" in c for c, _ in cards) == 2
    assert [o for _, o in cards[-3:]] == ["student", "teacher", "student"]
    assert "Correction 2 at step 1" in detail and "invalid: cut by a later correction" in detail
    assert "continuation" in detail and "verified prefix" in detail


def test_hostile_text_is_shown_as_text_not_run(report):
    html, profile = report
    dom = dump_dom(html, "#traj=traj-0024", profile)
    detail = _detail(dom)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&lt;/script&gt;&lt;script&gt;document.body.dataset.pwned=2" in detail
    assert "&lt;b&gt;bold&lt;/b&gt;" in detail
    assert len(re.findall(r"<script\b", dom)) == 3 and "<img" not in dom and "<b>bold" not in dom


def test_filter_search_and_unknown_id_from_the_hash(report):
    html, profile = report
    dom = dump_dom(html, "#filter=hard", profile)
    assert _list_ids(dom) == ["traj-0004", "traj-0010", "traj-0016", "traj-0022"] and "4 of 25 shown" in dom
    dom = dump_dom(html, "#filter=corrected&q=3600", profile)  # "How many positive divisors does 3600 have?"
    assert _list_ids(dom) == ["traj-0001", "traj-0005", "traj-0009", "traj-0013", "traj-0017", "traj-0021"]
    dom = dump_dom(html, "#traj=no-such-id", profile)
    assert "Trajectory no-such-id is not in this report." in _detail(dom)


def test_empty_run_renders_without_js_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    dom = dump_dom(write_report(empty), "", tmp_path / "profile")
    assert dom.count("not run:") == 7


def test_screenshot(report, tmp_path):
    """A PNG to look at (kept at $SCORE_DISTILL_REPORT_SHOT when set); here only checked to be a real image."""
    html, profile = report
    out = Path(os.environ.get("SCORE_DISTILL_REPORT_SHOT", tmp_path / "report.png"))
    _chromium(["--window-size=1300,5200", "--hide-scrollbars", f"--screenshot={out}",
               html.as_uri() + "#traj=traj-0003"], profile)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 100_000  # a blank page compresses to a few KB
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1300, 5200)
