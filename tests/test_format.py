"""The CodeAct parser: tolerant of broken output, exact on well-formed output, and on the reference data."""

import json
from pathlib import Path

import pytest

from score_distill.agent import format as fmt

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "score-official" / "examples"


def test_round_trip_action():
    text = fmt.render_action("compute it", "x = 2 + 3\nprint(x)")
    p = fmt.parse_action(text)
    assert (p.thought, p.code, p.format_errors) == ("compute it", "x = 2 + 3\nprint(x)", [])


def test_round_trip_plan():
    p = fmt.parse_plan(fmt.render_plan("first find a, then b"))
    assert (p.kind, p.thought, p.format_errors) == ("plan", "first find a, then b", [])


@pytest.mark.parametrize(
    "text, code, error",
    [
        ("<thought>t</thought><code>print(1)", "print(1)", "unclosed <code>"),
        ("<thought>t<code>print(1)</code>", "print(1)", "unclosed <thought>"),
        ("I will print\n```python\nprint(1)\n```\nDone.", "print(1)", "code in a markdown fence instead of <code>"),
        ("<thought>t</thought><code>print(1)</code>\nThat should work!", "print(1)", "text after </code> (ignored)"),
        ("<thought>t</thought><code>print(1)</code>\nObservation: 1", "print(1)", "wrote its own Observation"),
        ("<thought>t</thought><code>a=1</code><code>b=2</code>", "a=1", "several <code> blocks (first one used)"),
        ("<thought>t</thought><code>```python\nprint(2)\n```</code>", "print(2)", None),
        ("just chatting, no code at all", "", "no code block"),
        ("", "", "no code block"),
    ],
)
def test_broken_actions_are_recovered_and_counted(text, code, error):
    p = fmt.parse_action(text)
    assert p.code.strip() == code
    if error:
        assert error in p.format_errors
    else:
        assert p.format_errors == []


def test_plan_tolerance():
    p = fmt.parse_plan("Plan: add then multiply")
    assert p.thought == "Plan: add then multiply" and "missing <first_thought>" in p.format_errors
    p = fmt.parse_plan("<first_thought>do x</first_thought><code>print(1)</code>")
    assert p.thought == "do x" and "code in plan step (ignored)" in p.format_errors


def test_final_answer_detection():
    assert fmt.calls_final_answer('final_answer_print("42")')
    assert fmt.calls_final_answer("x = 1\nfinal_answer_print (x)")
    assert not fmt.calls_final_answer("my_final_answer_print(1)")
    assert not fmt.calls_final_answer("print(final_answer)")


def _reference_turns():
    data = json.loads((EXAMPLES / "search_mps_trajectories_llamafactory.json").read_text())
    data += json.loads((EXAMPLES / "math_mps_trajectories_llamafactory.json").read_text())
    for conv in data:
        turns = [t["value"] for t in conv["conversations"] if t["from"] == "gpt"]
        yield turns


@pytest.mark.skipif(not EXAMPLES.exists(), reason="shared reference data not present")
def test_parser_on_reference_trajectories():
    n_actions = n_clean = 0
    for turns in _reference_turns():
        plan = fmt.parse_plan(turns[0])
        assert plan.thought and "<first_thought>" not in plan.thought
        for t in turns[1:]:
            p = fmt.parse_action(t)
            n_actions += 1
            n_clean += not p.format_errors
            assert "<code>" not in p.code and "</code>" not in p.code
            if "<code>" in t:
                assert p.code.strip() == t.split("<code>", 1)[1].split("</code>", 1)[0].strip()
    assert n_actions > 400
    assert n_clean / n_actions > 0.95  # the reference teacher's format is clean; we must read it as such
