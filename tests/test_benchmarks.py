"""Benchmark loaders: the 14 released files, their quirks, path resolution, bad input."""

from __future__ import annotations

import pytest

from score_distill.tasks.benchmarks import BENCHMARKS, PAPER_BENCHMARKS, data_dir, load_benchmark
from score_distill.utils.jsonl import DataError

SIZES = {"aime24": 30, "aime25": 30, "math500": 500, "olymmath": 200, "hotpotqa": 200, "2wiki": 200,
         "musique": 200, "bamboogle": 125, "gaia": 103, "hle": 500, "webwalker": 200, "xbench": 100}


@pytest.mark.usefixtures("reference_data")
def test_all_twelve_load_with_their_kinds():
    assert set(PAPER_BENCHMARKS) == set(SIZES)
    for name in PAPER_BENCHMARKS:
        ts = load_benchmark(name)
        assert len(ts) == SIZES[name], name
        assert len({t.id for t in ts}) == len(ts)
        spec = BENCHMARKS[name]
        assert all(t.meta["kind"] == spec.kind and t.meta["metric"] == spec.metric for t in ts)
        if spec.kind == "qa":
            assert all(isinstance(t.answer, list) and t.answer for t in ts)
            assert all("web_search" in t.tools for t in ts)
        if spec.kind == "math":
            assert "web_search" not in ts[0].tools


@pytest.mark.usefixtures("reference_data")
def test_file_quirks():
    hle = load_benchmark("hle")
    assert hle[0].answer == "11520" and hle[0].id == "hle-0"  # int ids, "answer" field
    assert load_benchmark("aime25")[0].answer == "70"  # int answer
    a24 = load_benchmark("aime24")
    assert "reference_solution" in a24[0].meta and "solution" not in a24[0].meta
    gaia = load_benchmark("gaia")
    assert {t.id.split("-")[0] + "-" + t.id.split("-")[1] for t in gaia} == {"gaia-1", "gaia-2", "gaia-3"}
    assert len(load_benchmark("gaia-2")) == 52
    assert load_benchmark("hqa")[0].source == "hotpotqa"  # file-name aliases


def test_path_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("SCORE_DISTILL_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        load_benchmark("aime24")
    monkeypatch.delenv("SCORE_DISTILL_DATA")
    assert (data_dir() / "benchmarks" / "aime24.jsonl").exists()
    (tmp_path / "benchmarks").mkdir()
    with pytest.raises(FileNotFoundError, match="aime24.jsonl"):
        load_benchmark("aime24", data=tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        load_benchmark("nope")


def test_any_jsonl_and_bad_lines(tmp_path):
    p = tmp_path / "mine.jsonl"
    p.write_text('{"question": "2+2?", "true_answer": "4"}\n{"question": "Who?", "true_answer": ["Ann", "Anne"]}\n')
    ts = load_benchmark(p)
    assert [t.id for t in ts] == ["mine-1", "mine-2"] and ts[1].meta["kind"] == "qa"
    p.write_text('{"question": "2+2?", "true_answer": "4"}\n{"question": "x"}\n')
    with pytest.raises(DataError, match=r"mine.jsonl:2: missing field 'true_answer'"):
        load_benchmark(p)
    p.write_text('{"question": "2+2?", "true_answer": "4"}\n{"question": \n')
    with pytest.raises(DataError, match=r"mine.jsonl:2: invalid JSON"):
        load_benchmark(p)
    p.write_text('{"question": "", "true_answer": "4"}\n')
    with pytest.raises(DataError, match=r"mine.jsonl:1: field 'question'"):
        load_benchmark(p)
    p.write_text('{"id": 1, "question": "a", "true_answer": "4"}\n{"id": 1, "question": "b", "true_answer": "4"}\n')
    with pytest.raises(DataError, match="duplicate id"):
        load_benchmark(p)
    with pytest.raises(FileNotFoundError):
        load_benchmark(tmp_path / "absent.jsonl")
