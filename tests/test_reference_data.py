"""Where the reference data is looked for, and what a user is told when it is not there."""

from __future__ import annotations

import pytest

from score_distill.tasks.benchmarks import load_benchmark


def test_seed_file_named_relative_to_the_data_folder(reference_data, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the name does not exist here: it is found in the data folder
    tasks = load_benchmark("seeds/math_bc_init_seed.jsonl", data=reference_data)
    assert len(tasks) == 1331 and tasks[0].source == "math_bc_init_seed"


def test_missing_data_names_the_variable_and_the_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCORE_DISTILL_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"absent \(from SCORE_DISTILL_DATA\)"):
        load_benchmark("aime24")
    with pytest.raises(FileNotFoundError, match=r"seeds/x\.jsonl .*SCORE_DISTILL_DATA"):
        load_benchmark("seeds/x.jsonl")
    (tmp_path / "absent").mkdir()
    with pytest.raises(FileNotFoundError, match=r"nor .*absent/seeds/x\.jsonl"):
        load_benchmark("seeds/x.jsonl")
