"""Crash-safe JSONL: torn tails are repaired, malformed lines name file and line, nothing written is lost."""

import os

import pytest

from score_distill.trajectory import Step, Task, Trajectory
from score_distill.utils.jsonl import DataError, append_jsonl, read_jsonl, repair_tail, write_jsonl


def _traj(i: int) -> Trajectory:
    return Trajectory(id=f"t{i}", task=Task(id=f"q{i}", question="1+1?", answer="2"),
                      steps=[Step(kind="plan", thought="add"), Step(thought="t", code="print(1+1)", observation="2")])


def test_append_and_read_back(tmp_path):
    p = tmp_path / "a.jsonl"
    append_jsonl(p, [_traj(0), _traj(1)])
    append_jsonl(p, [_traj(2)])
    back = read_jsonl(p, Trajectory)
    assert [t.id for t in back] == ["t0", "t1", "t2"]
    assert back[1] == _traj(1)


def test_torn_tail_is_cut_before_the_next_append(tmp_path):
    p = tmp_path / "a.jsonl"
    append_jsonl(p, [_traj(0)])
    with open(p, "ab") as f:  # what a kill -9 in the middle of a write leaves behind
        f.write(_traj(1).model_dump_json().encode()[:37])
    assert [t.id for t in read_jsonl(p, Trajectory)] == ["t0"]  # readers skip it
    append_jsonl(p, [_traj(2)])
    assert [t.id for t in read_jsonl(p, Trajectory)] == ["t0", "t2"]
    assert repair_tail(p) == 0


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(_traj(0).model_dump_json() + "\n{not json}\n" + _traj(1).model_dump_json() + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_jsonl(p, Trajectory)


def test_wrong_field_type_names_the_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    d = _traj(0).model_dump()
    d["steps"][1]["prompt_tokens"] = "many"
    import json

    p.write_text(json.dumps(d) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'steps.1.prompt_tokens'"):
        read_jsonl(p, Trajectory)


def test_invalid_utf8_and_unknown_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(DataError, match=r":1: invalid UTF-8"):
        read_jsonl(p)
    q = tmp_path / "extra.jsonl"
    d = _traj(0).model_dump()
    d["surprise"] = 1
    import json

    q.write_text(json.dumps(d) + "\n")
    with pytest.raises(DataError, match="surprise"):
        read_jsonl(q, Trajectory)


def test_write_jsonl_is_atomic(tmp_path):
    p = tmp_path / "w.jsonl"
    write_jsonl(p, [_traj(0)])
    write_jsonl(p, [_traj(1), _traj(2)])
    assert [t.id for t in read_jsonl(p, Trajectory)] == ["t1", "t2"]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_missing_file():
    with pytest.raises(DataError, match="file not found"):
        read_jsonl("/nonexistent/x.jsonl")


def test_chat_rendering_masks_nothing_and_orders_turns():
    t = _traj(0)
    msgs = t.to_messages()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[3]["content"] == "Observation: None" and msgs[5]["content"] == "Observation: 2"
    assert t.to_messages(upto=1)[-1]["content"] == "Observation: None"
