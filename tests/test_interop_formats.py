"""Hugging Face datasets and LLaMA-Factory sharegpt export/import."""

from __future__ import annotations

import json

import pytest
from reference_data import REFERENCE_DATA

from score_distill.interop.hf_datasets import load_trajectories, save_trajectories_dataset, to_hf_dataset
from score_distill.interop.llamafactory import TAGS, export_llamafactory, load_sharegpt
from score_distill.interop.reference import load_reference_trajectories
from score_distill.trajectory import Step, Task, Trajectory
from score_distill.utils.jsonl import DataError

EX = REFERENCE_DATA / "examples"


def _trajs() -> list[Trajectory]:
    if EX.exists():
        return load_reference_trajectories(EX / "math_mps_trajectories.jsonl")[:12]
    return [Trajectory(task=Task(id="a", question="q", answer=["x", "y"]),
                       steps=[Step(kind="plan", thought="p"), Step(thought="t", code="print(1)", observation="1")])]


def test_hf_dataset_round_trip(tmp_path):
    trajs = _trajs()
    ds = to_hf_dataset(trajs)
    assert len(ds) == len(trajs)
    row = ds[0]
    assert row["messages"] == trajs[0].to_messages()
    assert row["n_steps"] == len(trajs[0].steps) and row["origins"] == [s.origin for s in trajs[0].steps]
    out = save_trajectories_dataset(trajs, tmp_path / "ds")
    assert load_trajectories(out) == trajs
    assert load_trajectories(out / "data.jsonl") == trajs


def test_hf_dataset_bad_row_is_named(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"trajectory": "{}"}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:1"):
        load_trajectories(p)


def test_llamafactory_export_import_preserves_steps(tmp_path):
    trajs = _trajs()
    f = export_llamafactory(trajs, tmp_path, name="mps", system=None)
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["mps"]["formatting"] == "sharegpt" and info["mps"]["tags"] == TAGS
    assert info["mps"]["columns"] == {"messages": "conversations", "system": "system"}
    back = load_sharegpt(f)
    for a, b in zip(trajs, back):
        assert b.task.question == a.task.question
        assert [(s.kind, s.thought, s.code) for s in b.steps] == [(s.kind, s.thought, s.code) for s in a.steps]
        assert [s.observation for s in b.steps[:-1]] == [s.observation if s.kind == "action" else "None"
                                                        for s in a.steps[:-1]]
        assert all(s.raw is None for s in b.steps)  # our rendering parses back exactly
    export_llamafactory(trajs[:2], tmp_path, name="second")
    assert set(json.loads((tmp_path / "dataset_info.json").read_text())) == {"mps", "second"}


@pytest.mark.usefixtures("reference_data")
@pytest.mark.parametrize("name", sorted(p.name for p in EX.glob("*_llamafactory.json")) if EX.exists() else [])
def test_reference_sharegpt_files_import(name):
    src = json.loads((EX / name).read_text())
    trajs = load_sharegpt(EX / name)
    assert len(trajs) == len(src)
    for r, t in zip(src, trajs):
        assert len(t.steps) == sum(1 for c in r["conversations"] if c["from"] == "gpt")
        assert t.steps[0].kind == "plan" and all(s.kind == "action" for s in t.steps[1:])
        assert all(s.code for s in t.steps[1:])


def test_bad_sharegpt_is_named(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps([{"conversations": [{"from": "gpt", "value": "a"}]}]))
    with pytest.raises(DataError, match="record 0"):
        load_sharegpt(p)
    p.write_text("[{")
    with pytest.raises(DataError, match=r"x.json:1"):
        load_sharegpt(p)
