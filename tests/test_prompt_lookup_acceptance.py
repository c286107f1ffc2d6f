"""benchmarks/prompt_lookup_acceptance.py replays recorded token ids as speculative decoding would verify them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from prompt_lookup_acceptance import lookup, replay  # noqa: E402


def test_lookup_takes_the_longest_suffix_with_an_earlier_occurrence():
    assert lookup([5, 1, 2, 8, 1, 2, 9, 1, 2], 2, 3) == [9, 1]  # "1 2" last seen before "9"
    assert lookup([5, 1, 2, 8, 3, 1, 2], 3, 3) == [8, 3, 1]
    assert lookup([4, 5, 6], 4, 3) == []


def test_replay_counts_forwards_over_turns_and_appended_ids(tmp_path):
    rec = {"id": "t", "prompt_ids": [7, 1, 2, 3, 9],
           "steps": [{"tokens": {"ids": [1, 2, 3, 9], "sampled": True, "after": [4]}},
                     {"tokens": {"ids": [6, 6], "sampled": False}},  # a teacher's step: context only
                     {"tokens": {"ids": [5, 5], "sampled": True}}]}
    r = replay([rec], 4, 3)
    # turn 1: nothing to draft at its start, then after "1" the draft [2, 3, 9, 1] matches 3 ids; turn 2: the draft
    # [6] misses, then nothing to draft after "5": 2 + 2 forwards for 6 tokens
    assert (r["tokens"], r["forwards"], r["accepted"]) == (6, 4, 3)
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps(rec) + "\n")
    script = REPO / "benchmarks" / "prompt_lookup_acceptance.py"
    p = subprocess.run([sys.executable, str(script), str(f), "--draft", "4", "--json", str(tmp_path / "o.json")],
                       capture_output=True, text=True, check=True)
    assert "tokens/forward=1.5" in p.stdout
    assert json.loads((tmp_path / "o.json").read_text())["files"][str(f)][0]["forwards"] == 4
