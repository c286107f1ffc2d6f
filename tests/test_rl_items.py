"""RL items from MPS output, the reference file, the item schedule, and the verl export."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from reference_data import REFERENCE_DATA

from score_distill.rl.config import ItemsConfig
from score_distill.rl.items import SplitLeakError, build_rl_items, from_reference_rl, load_items, save_items
from score_distill.rl.schedule import batch_schedule
from score_distill.rl.verl_export import export_verl_parquet
from score_distill.trajectory import Correction, Step, Task, Trajectory
from score_distill.utils.jsonl import DataError

REF = REFERENCE_DATA / "examples" / "math_mps_rl.json"
PLAN = Step(kind="plan", thought="plan")
GOOD = Step(thought="t", code="print(42)", observation="42", origin="teacher")
BAD = Step(thought="t", code="print(41)", observation="41")


def corrected(tid: str, outcome: str = "correct", valid=(True,)) -> Trajectory:
    cs = [Correction(step_index=1, prefix=[PLAN], chosen=GOOD, rejected=BAD, valid=v) for v in valid]
    return Trajectory(task=Task(id=tid, question="q", answer="42"), steps=[PLAN, GOOD], outcome=outcome,
                      final_answer="42", corrections=cs)


def plain(tid: str, outcome: str) -> Trajectory:
    return Trajectory(task=Task(id=tid, question="q", answer="42"), steps=[PLAN], outcome=outcome)


def test_items_from_corrections_and_sampled_question_only(tmp_path):
    trajs = [corrected("a"), corrected("b", valid=(False, True)), corrected("c", outcome="wrong")]
    trajs += [plain(f"u{i}", "wrong") for i in range(200)] + [plain(f"s{i}", "correct") for i in range(200)]
    items = build_rl_items(trajs, sft_task_ids=["x"], config=ItemsConfig(seed=1))
    ks = [i for i in items if i.kind == "key_step"]
    assert [i.task.id for i in ks] == ["a", "b"]  # one per valid correction; unverified "c" is not a key step
    assert ks[0].prefix == [PLAN] and ks[0].chosen == GOOD and ks[0].rejected == BAD and ks[0].step_index == 1
    unsolved = sum(i.task.id.startswith("u") for i in items)
    solved = sum(i.task.id.startswith("s") for i in items)
    assert 70 < unsolved < 130 and 5 < solved < 40
    assert build_rl_items(trajs, sft_task_ids=[], config=ItemsConfig(seed=1)) == items  # seeded
    save_items(tmp_path / "items.jsonl", items)
    assert load_items(tmp_path / "items.jsonl") == items


def test_sft_task_in_rl_half_is_refused():
    with pytest.raises(SplitLeakError, match="a"):
        build_rl_items([corrected("a")], sft_task_ids={"a"})


def test_bad_item_file_names_line(tmp_path):
    p = tmp_path / "items.jsonl"
    p.write_text('{"id": "x", "kind": "key_step"}\n')
    with pytest.raises(DataError, match=r"items.jsonl:1: field 'task'"):
        load_items(p)


@pytest.mark.usefixtures("reference_data")
def test_reference_rl_file_imports():
    items = from_reference_rl(REF)
    ks = [i for i in items if i.kind == "key_step"]
    assert len(items) == 17 and len(ks) == 13
    for it in ks:
        assert it.step_index == len(it.prefix) >= 1 and it.prefix[0].kind == "plan"
        assert it.chosen.code and it.chosen.observation and not it.chosen.observation.startswith("Observation:")


def test_schedule_is_a_seeded_permutation_per_epoch():
    s = batch_schedule(10, 4, 2, seed=5)
    assert [len(b) for b in s] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(s[:3], [])) == list(range(10)) and sorted(sum(s[3:], [])) == list(range(10))
    assert s == batch_schedule(10, 4, 2, seed=5) and s != batch_schedule(10, 4, 2, seed=6)


@pytest.mark.usefixtures("reference_data")
def test_verl_parquet_reads_back(tmp_path):
    items = from_reference_rl(REF)
    n = export_verl_parquet(items, tmp_path / "train.parquet")
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    assert n == len(rows) == 17
    ks = next(r for r in rows if r["extra_info"]["kind"] == "key_step")
    assert ks["prompt"][0]["role"] == "system" and ks["prompt"][1]["role"] == "user"
    assert ks["prompt"][2]["content"].startswith("<first_thought>")
    assert ks["reward_model"] == {"style": "rule", "ground_truth": items[rows.index(ks)].task.answer}
    assert '"text"' in ks["extra_info"]["chosen"] and ks["extra_info"]["step_index"] >= 1
