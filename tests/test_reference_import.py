"""The reference implementation's example files import with every step and correction, and round-trip exactly."""

from __future__ import annotations

import json

import pytest
from reference_data import REFERENCE_DATA

from score_distill.interop.reference import (
    _parse_context,
    load_reference,
    load_reference_rl_items,
    load_reference_trajectories,
    to_reference_record,
    to_reference_rl_item,
    write_reference_rl_items,
    write_reference_trajectories,
)
from score_distill.trajectory import Correction, Step, Task, Trajectory
from score_distill.utils.jsonl import DataError

EX = REFERENCE_DATA / "examples"
pytestmark = pytest.mark.usefixtures("reference_data")

TRAJ_FILES = sorted(p.name for p in EX.glob("*_trajectories.jsonl")) if EX.exists() else []
RL_FILES = ["math_mps_rl.json", "math_rl_val.json"]


def _lines(name):
    return [json.loads(x) for x in (EX / name).read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("name", TRAJ_FILES)
def test_trajectory_files_lose_nothing_and_round_trip(name, tmp_path):
    src = _lines(name)
    trajs = load_reference_trajectories(EX / name)
    assert len(trajs) == len(src)
    bc = "bc_init" in name
    n_src_steps = sum(len(r["steps"]) + (1 if bc else 0) for r in src)  # bc_init: plan is first_thought
    assert sum(len(t.steps) for t in trajs) == n_src_steps
    assert sum(len(t.corrections) for t in trajs) == sum(len(r.get("repair_steps") or []) for r in src)
    for r, t in zip(src, trajs):
        assert t.steps[0].kind == "plan" and t.steps[0].code == ""
        assert not t.steps[0].thought.lower().startswith(("first thought", "first-thought"))
        assert all(s.kind == "action" for s in t.steps[1:])
        if bc:
            assert all(s.origin == "teacher" for s in t.steps)
        for rep, c in zip(r.get("repair_steps") or [], t.corrections):
            k = rep["mistake_step_index"]
            assert c.step_index == k and c.valid == rep["is_valid"]
            assert c.chosen.code == rep["teacher_guided_step"]["code"]
            assert c.rejected.code == rep["student_mistake"][0]["code"]
            assert c.analysis and c.suggestion and "Correction Suggestion" not in c.analysis
            assert t.steps[k].origin == "teacher"  # the teacher's step stands in the final trajectory
            assert [s.code for s in c.prefix] == [s.code for s in t.steps[:k]]
        teacher_steps = {c.step_index for c in t.corrections if c.valid}
        if not bc:
            assert {i for i, s in enumerate(t.steps) if s.origin == "teacher"} == teacher_steps
    # Exact round trip through our JSONL and back to the reference format.
    write_reference_trajectories(tmp_path / name, [Trajectory.model_validate_json(t.model_dump_json()) for t in trajs])
    assert _lines(tmp_path / name) == src


@pytest.mark.parametrize("name", RL_FILES)
def test_rl_items_import_and_round_trip(name, tmp_path):
    src = json.loads((EX / name).read_text())
    trajs = load_reference_rl_items(EX / name)
    assert len(trajs) == len(src)
    for it, t in zip(src, trajs):
        assert len(t.steps) == (len(it["prompt"]) - 1 + 1) // 2
        assert len(t.corrections) == (1 if it["chosen"] else 0)
        if it["chosen"]:
            c = t.corrections[0]
            assert c.step_index == len(t.steps) and len(c.prefix) == len(t.steps)
            assert c.chosen.origin == "teacher" and c.chosen.code and c.rejected.thought
            assert c.chosen.raw == it["chosen"]
        assert to_reference_rl_item(t) == it
    write_reference_rl_items(tmp_path / name, trajs)
    assert json.loads((tmp_path / name).read_text()) == src


def test_every_example_file_loads_by_name():
    for p in sorted(EX.iterdir()):
        assert load_reference(p), p.name


def test_context_parser_matches_standing_prefixes():
    trajs = load_reference_trajectories(EX / "math_mps_trajectories.jsonl")
    src = _lines("math_mps_trajectories.jsonl")
    checked = 0
    for r, t in zip(src, trajs):
        for rep, c in zip(r["repair_steps"], t.corrections):
            parsed = _parse_context(rep["context_before_intervention"])
            assert [s.kind for s in parsed] == [s.kind for s in c.prefix]
            assert [s.code.strip() for s in parsed] == [s.code.strip() for s in c.prefix]
            checked += 1
    assert checked == 23


def test_our_trajectory_exports_to_reference_and_back(tmp_path):
    plan = Step(kind="plan", thought="Add them.")
    wrong = Step(thought="add", code="print(2+2)", observation="4")
    right = Step(thought="add", code="print(2+3)", observation="5", origin="teacher")
    fin = Step(thought="submit", code="final_answer_print(5)", observation="5", final_answer="5")
    t = Trajectory(
        task=Task(id="q1", question="2+3?", answer="5"), steps=[plan, right, fin], final_answer="5",
        outcome="correct", score=1.0,
        corrections=[
            Correction(step_index=1, prefix=[plan], chosen=right, rejected=wrong, analysis="A", suggestion="S")
        ],
    )
    write_reference_trajectories(tmp_path / "x_mps_trajectories.jsonl", [t])
    back = load_reference_trajectories(tmp_path / "x_mps_trajectories.jsonl")[0]
    def fields(steps):
        return [(s.kind, s.thought, s.code, s.origin) for s in steps]

    assert fields(back.steps) == fields(t.steps)
    c = back.corrections[0]
    assert (c.step_index, c.chosen.code, c.rejected.code, c.analysis, c.suggestion) == (
        1, "print(2+3)", "print(2+2)", "A", "S")
    assert back.outcome == "correct" and back.final_answer == "5"
    context = to_reference_record(back)["repair_steps"][0]["context_before_intervention"]
    assert context.startswith("Step 1:\nFirst Thought: Add them.")


def test_malformed_line_names_file_and_line(tmp_path):
    good = (EX / "math_bc_init_trajectories.jsonl").read_text().splitlines()
    p = tmp_path / "bad_bc_init_trajectories.jsonl"
    p.write_text("\n".join([good[0], "{oops", good[1]]) + "\n")
    with pytest.raises(DataError, match=r"bad_bc_init_trajectories.jsonl:2"):
        load_reference_trajectories(p)
    rec = json.loads(good[0])
    del rec["original_task_info"]["question"]
    p.write_text(good[0] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r":2: missing field 'original_task_info.question'"):
        load_reference_trajectories(p)
    rec = _lines("math_mps_trajectories.jsonl")[0]
    rec["repair_steps"] = [{"teacher_guided_step": {}, "student_mistake": [{}], "mistake_step_index": 99}]
    p2 = tmp_path / "bad_mps_trajectories.jsonl"
    p2.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r":1: field 'repair_steps.0.mistake_step_index' = 99"):
        load_reference_trajectories(p2)
