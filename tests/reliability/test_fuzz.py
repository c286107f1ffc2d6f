"""Bad input, generated: JSONL files, configs, model outputs and command lines that are broken in many ways.

Properties: a broken record is a DataError naming file and line (never another exception, never
silently skipped); a broken config is a ConfigError naming the key; the step parser never raises;
the CLI answers a user mistake with exit code 2 and an error line, no traceback, and leaves
existing files as they were.
"""

from __future__ import annotations

import json
import typing

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from score_distill.agent import format as fmt
from score_distill.cli import main
from score_distill.config import ConfigError, RunConfig, load_config
from score_distill.trajectory import Step, Task, ToolCall, Trajectory
from score_distill.utils.jsonl import DataError, append_jsonl, read_jsonl

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text as it comes from models and tools: any code point, lone surrogates included (json.loads of
# "\udcff", or a tool call the model's code made with such a string, produces them). Low surrogates
# only: a high+low pair is read back as the one character it encodes, as JSON defines.
any_text = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(["\udc80", "\udcff", "é", "\x00", "\n", "a"]),
                                                      max_size=6).map("".join))


@st.composite
def trajectories(draw) -> Trajectory:
    task = Task(id=draw(st.text(min_size=1, max_size=12)), question=draw(any_text),
                answer=draw(st.one_of(any_text, st.lists(any_text, max_size=3))))
    steps = [Step(kind=draw(st.sampled_from(["plan", "action"])), thought=draw(any_text), code=draw(any_text),
                  observation=draw(any_text),
                  tool_calls=[ToolCall(name="web_search", args=[draw(any_text)], result=draw(any_text))])
             for _ in range(draw(st.integers(0, 3)))]
    return Trajectory(task=task, steps=steps, final_answer=draw(st.none() | any_text),
                      score=draw(st.floats(0, 1)), meta={"k": draw(any_text)})


@FUZZ
@given(st.lists(trajectories(), min_size=1, max_size=4))
def test_any_trajectory_written_is_read_back_unchanged(tmp_path_factory, trajs):
    path = tmp_path_factory.mktemp("rt") / "t.jsonl"
    append_jsonl(path, trajs)
    assert read_jsonl(path, Trajectory) == trajs


def _valid_line(i: int) -> dict:
    t = Trajectory(task=Task(id=f"t{i}", question=f"q{i}", answer="1"),
                   steps=[Step(kind="plan", thought="p"), Step(thought="x", code="print(1)", observation="1\n")])
    return json.loads(t.model_dump_json())


_MAPPING = {"bad": [1]}
# field -> a value of a type the field can never accept
_WRONG_TYPES = {"task": "a string", "steps": _MAPPING, "score": _MAPPING, "outcome": "maybe", "final_answer": _MAPPING,
                "corrections": "none", "meta": [1, 2], "hard_to_teach": _MAPPING, "schema_version": "one",
                "teacher_usage": 3}


@st.composite
def corruptions(draw):
    """(how, bytes of the bad line, field the error must name or None)."""
    how = draw(st.sampled_from(["garbage", "invalid_utf8", "not_object", "wrong_type", "unknown_field",
                                "truncated", "deep", "huge_int"]))
    if how == "garbage":
        raw = draw(st.binary(min_size=1, max_size=60)).replace(b"\n", b" ")
        assume(raw.strip())  # a blank line is skipped by design
        return how, raw, None
    if how == "invalid_utf8":
        good = json.dumps(_valid_line(99)).encode()
        at = draw(st.integers(1, len(good) - 1))
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]))
        return how, good[:at] + bad + good[at:], None
    if how == "not_object":
        return how, json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=5),
                                               st.none()))).encode(), None
    if how == "wrong_type":
        field = draw(st.sampled_from(sorted(_WRONG_TYPES)))
        rec = _valid_line(99)
        rec[field] = _WRONG_TYPES[field]
        return how, json.dumps(rec).encode(), field
    if how == "unknown_field":
        name = draw(st.from_regex(r"[a-z_]{3,12}", fullmatch=True))
        assume(name not in Trajectory.model_fields)
        rec = _valid_line(99)
        rec[name] = 1
        return how, json.dumps(rec).encode(), name
    if how == "truncated":
        good = json.dumps(_valid_line(99)).encode()
        return how, good[: draw(st.integers(1, len(good) - 1))], None
    if how == "deep":
        return how, b'{"meta": ' + b"[" * draw(st.integers(50_000, 200_000)), None
    return how, b'{"score": ' + b"7" * draw(st.integers(4301, 20_000)) + b"}", None


@FUZZ
@given(n=st.integers(1, 5), data=st.data())
def test_a_broken_line_is_a_data_error_naming_file_line_and_field(tmp_path_factory, n, data):
    bad_at = data.draw(st.integers(0, n - 1))
    how, bad, field = data.draw(corruptions())
    lines = [json.dumps(_valid_line(i)).encode() for i in range(n)]
    lines[bad_at] = bad
    path = tmp_path_factory.mktemp("bad") / "records.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        read_jsonl(path, Trajectory)
    except DataError as e:
        assert e.path == str(path) and e.line == bad_at + 1, (how, str(e))
        assert str(e).startswith(f"{path}:{bad_at + 1}: ")
        if field:
            assert f"'{field}" in str(e), (how, str(e))
    else:
        pytest.fail(f"{how}: {bad[:80]!r} was accepted")


@FUZZ
@given(n=st.integers(1, 5), cut=st.floats(0.01, 0.99))
def test_a_torn_last_line_is_skipped_then_repaired_by_the_next_append(tmp_path_factory, n, cut):
    path = tmp_path_factory.mktemp("torn") / "records.jsonl"
    whole = [_valid_line(i) for i in range(n)]
    data = "".join(json.dumps(r) + "\n" for r in whole).encode()
    last = json.dumps(whole[-1]).encode()
    torn = data[: len(data) - len(last) - 1 + max(1, int(len(last) * cut))]  # killed mid-write of the last record
    path.write_bytes(torn)
    assert [t.task.id for t in read_jsonl(path, Trajectory)] == [f"t{i}" for i in range(n - 1)]
    append_jsonl(path, [Trajectory.model_validate(whole[-1])])
    assert [t.task.id for t in read_jsonl(path, Trajectory)] == [f"t{i}" for i in range(n)]


def test_huge_fields_are_data_not_errors(tmp_path):
    big = "x" * 5_000_000 + "é" * 100_000
    t = Trajectory(task=Task(id="big", question=big, answer=big[:10]), steps=[Step(observation=big)])
    append_jsonl(tmp_path / "big.jsonl", [t, t])
    assert read_jsonl(tmp_path / "big.jsonl", Trajectory) == [t, t]


# ----------------------------------------------------------------------------- configs


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, f in model.model_fields.items():
        a = f.annotation
        if isinstance(a, type) and issubclass(a, BaseModel):
            out += _leaves(a, f"{prefix}{name}.")
        elif "dict" not in str(a) and a is not typing.Any:
            out.append(prefix + name)
    return out


def _models(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = [prefix]
    for name, f in model.model_fields.items():
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            out += _models(f.annotation, f"{prefix}{name}.")
    return out


LEAVES = _leaves(RunConfig)
SECTIONS = _models(RunConfig)


def _nest(path: str, value) -> dict:
    node: dict = value
    for part in reversed(path.split(".")):
        node = {part: node}
    return node


@FUZZ
@given(path=st.sampled_from(LEAVES), wrong=st.sampled_from([{"bad": [1]}, [{"x": None}]]))
def test_config_wrong_type_names_the_key_and_the_file(tmp_path_factory, path, wrong):
    cfg = tmp_path_factory.mktemp("cfg") / "bad.yaml"
    cfg.write_text(yaml.safe_dump(_nest(path, wrong)))
    with pytest.raises(ConfigError) as ei:
        load_config(cfg, preset="tiny")
    msg = str(ei.value)
    assert f"'{path}" in msg and str(cfg) in msg and "\n" not in msg


@FUZZ
@given(section=st.sampled_from(SECTIONS), key=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True))
def test_config_unknown_key_names_the_key(tmp_path_factory, section, key):
    full = section + key
    assume(full not in LEAVES and full.rstrip(".") + "." not in SECTIONS)
    cfg = tmp_path_factory.mktemp("cfg") / "extra.yaml"
    cfg.write_text(yaml.safe_dump(_nest(full, 1)))
    with pytest.raises(ConfigError) as ei:
        load_config(cfg, preset="tiny")
    assert f"unknown config key '{full}'" in str(ei.value)


@FUZZ
@given(st.lists(st.text(max_size=30), min_size=1, max_size=3))
def test_any_override_is_a_config_or_a_config_error(items):
    try:
        cfg = load_config(None, items, preset="tiny")
    except ConfigError as e:
        assert str(e).startswith(("override '", "config key '", "unknown config key '")), str(e)
    else:
        assert isinstance(cfg, RunConfig)


@FUZZ
@given(st.binary(max_size=200))
def test_any_config_file_is_a_config_or_a_config_error(tmp_path_factory, raw):
    cfg = tmp_path_factory.mktemp("cfg") / "any.yaml"
    cfg.write_bytes(raw)
    try:
        load_config(cfg, preset="tiny")
    except ConfigError as e:
        assert str(cfg) in str(e)


# ----------------------------------------------------------------------------- model outputs

TAGS = [fmt.PLAN_OPEN, fmt.PLAN_CLOSE, fmt.THOUGHT_OPEN, fmt.THOUGHT_CLOSE, fmt.CODE_OPEN, fmt.CODE_CLOSE,
        "```python\n", "```", "\nObservation:", "final_answer_print(", "<code", "</", "\n"]
model_output = st.lists(st.one_of(st.sampled_from(TAGS), st.text(max_size=20)), max_size=12).map("".join)


@settings(max_examples=300, deadline=None, database=None)
@given(text=model_output, is_first=st.booleans())
def test_parse_step_never_raises(text, is_first):
    p = fmt.parse_step(text, is_first=is_first)
    assert p.kind == ("plan" if is_first else "action")
    assert isinstance(p.thought, str) and isinstance(p.code, str)
    assert all(isinstance(e, str) for e in p.format_errors)
    if is_first:
        assert p.code == ""


plain = st.text(alphabet=st.characters(blacklist_characters="<`\r", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None, database=None)
@given(thought=plain, code=plain)
def test_a_well_formed_action_parses_back_to_itself(thought, code):
    assume("Observation" not in thought + code and thought.strip() and code.strip())
    p = fmt.parse_action(fmt.render_action(thought, code))
    assert (p.thought, p.code, p.format_errors) == (thought.strip(), code.strip(), [])


# ----------------------------------------------------------------------------- the CLI


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _assert_user_error(rc: int, err: str, *must_contain: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err and "error:" in err, err
    flat = err.replace("\n", "")  # the console may fold a long line; the content must be there
    for s in must_contain:
        assert s in flat, (s, err)


def test_cli_bad_configs_exit_2_without_traceback(tmp_path, capsys):
    (tmp_path / "unknown.yaml").write_text("rl:\n  group_sise: 4\n")
    (tmp_path / "wrongtype.yaml").write_text("student:\n  batch_size: lots\n")
    (tmp_path / "invalid.yaml").write_text("student:\n  model: [tiny\n  batch_size: 2\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00junk")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    cases = [
        (["config", "--preset", "tiny", "--config", str(tmp_path / "unknown.yaml")], ["rl.group_sise"]),
        (["config", "--preset", "tiny", "--config", str(tmp_path / "wrongtype.yaml")], ["student.batch_size"]),
        (["run", "--preset", "tiny", "--config", str(tmp_path / "invalid.yaml"), "--out", str(tmp_path / "r")],
         ["invalid.yaml:"]),
        (["config", "--config", str(tmp_path / "binary.yaml")], ["binary.yaml"]),
        (["config", "--config", str(tmp_path / "list.yaml")], ["list.yaml"]),
        (["run", "--preset", "tiny", "--config", str(tmp_path / "missing.yaml")], ["missing.yaml", "not found"]),
        (["run", "--preset", "nope", "--out", str(tmp_path / "r")], ["nope"]),
        (["config", "--preset", "tiny", "rl.group_size=abc"], ["rl.group_size"]),
        (["config", "--preset", "tiny", "no_equals_sign"], ["no_equals_sign"]),
        (["run", "--preset", "tiny", "--out", str(tmp_path / "r"), "--from", "nowhere"], ["nowhere"]),
        (["report", str(tmp_path / "not_a_run")], ["not_a_run"]),
        (["sandbox", str(tmp_path / "missing.py")], ["missing.py"]),
    ]
    for argv, needles in cases:
        rc, err = _cli(capsys, argv)
        _assert_user_error(rc, err, *needles)
    assert not (tmp_path / "r" / "tasks").exists()  # nothing ran


def test_cli_corrupt_run_file_is_named_and_kept(tmp_path, capsys):
    out = tmp_path / "run"
    rc, err = _cli(capsys, ["run", "--preset", "tiny", "--out", str(out), "--to", "tasks"])
    assert rc == 0, err
    bc = out / "tasks" / "bc.jsonl"
    lines = bc.read_bytes().split(b"\n")
    lines[1] = lines[1][: len(lines[1]) // 2]  # a hand edit gone wrong on line 2
    bc.write_bytes(b"\n".join(lines))
    # The manifest and the run log are written by every run; the records must not be.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name not in ("manifest.json", "run.log")}
    rc, err = _cli(capsys, ["run", "--preset", "tiny", "--out", str(out), "--to", "bc_init"])
    _assert_user_error(rc, err, f"{bc}:2", "invalid JSON")
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name not in ("manifest.json", "run.log")}
    assert {p: after[p] for p in before} == before  # nothing finished was touched


# The console must neither fold a long message nor read [brackets] in it as markup.


def test_cli_error_is_one_line_even_when_long(tmp_path, capsys):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "config_file_that_does_not_exist.yaml"
    rc, err = _cli(capsys, ["config", "--preset", "tiny", "--config", str(deep)])
    assert rc == 2 and err.strip().count("\n") == 0 and str(deep) in err, err


def test_cli_error_with_brackets_in_a_key_is_not_markup(tmp_path, capsys):
    (tmp_path / "br.yaml").write_text('"[/x]": 1\n')
    rc, err = _cli(capsys, ["config", "--preset", "tiny", "--config", str(tmp_path / "br.yaml")])
    _assert_user_error(rc, err, "[/x]")
