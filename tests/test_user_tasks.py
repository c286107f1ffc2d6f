"""A user's own task set (JSONL: question, answer, tools, scorer) through the whole pipeline with an LLM teacher
behind a real OpenAI-compatible HTTP server, and the loader's checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from score_distill.agent import format as fmt
from score_distill.cli import main
from score_distill.tasks.benchmarks import load_benchmark
from score_distill.tasks.scoring import is_correct, score
from score_distill.teachers import prompts
from score_distill.testing import FakeOpenAIServer
from score_distill.utils.jsonl import DataError, read_jsonl

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


class Teacher:
    """Answers every prompt of the LLM teacher from the example files' answers: solve (plan, then the answer),
    locate (the first action is wrong), write (the step that answers)."""

    def __init__(self) -> None:
        self.answers = {}
        for f in ("my_tasks.jsonl", "my_tasks_heldout.jsonl"):
            for row in read_jsonl(EXAMPLES / f):
                a = row["answer"]
                self.answers[row["question"]] = a[0] if isinstance(a, list) else a
        self.kinds: dict[str, int] = {"solve": 0, "locate": 0, "write": 0}

    def step(self, question: str) -> str:
        return fmt.render_action("Compute it and report the answer.", f"final_answer_print({self.answers[question]!r})")

    def __call__(self, req: dict):
        msgs = req["messages"]
        system, user = msgs[0]["content"], next(m["content"] for m in msgs if m["role"] == "user")
        if system == prompts.LOCATE_SYSTEM:
            self.kinds["locate"] += 1
            n = int(re.search(r"\((\d+) in total\)", user).group(1))
            return json.dumps({"is_correct": False, "error_analysis": "The answer is not computed.",
                               "first_error_step": min(2, n), "suggestion": "Compute the value, then answer."})
        if system.startswith(prompts.WRITE_SYSTEM):
            self.kinds["write"] += 1
            question = user.split("Task:\n", 1)[1].split("\n\n", 1)[0]
            return self.step(question)
        self.kinds["solve"] += 1
        if not any(m["role"] == "assistant" for m in msgs):
            return fmt.render_plan("Work out the value with Python, then answer.")
        return self.step(user)


def test_the_pipeline_runs_on_a_users_task_files_with_an_llm_teacher(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the example config names the files relative to the repository
    out = tmp_path / "run"
    teacher = Teacher()
    with FakeOpenAIServer(teacher) as srv:
        code = main(["run", "--preset", "tiny", "--config", "examples/my_tasks.yaml", "--out", str(out),
                     f"teacher.base_url={srv.base_url}", "teacher.model=fake-model", "teacher.max_retries=0",
                     "teacher.timeout_s=10", "bc.share=0.5", "bc_baseline.enabled=false"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert all(teacher.kinds[k] > 0 for k in ("solve", "locate")), teacher.kinds
    train = read_jsonl(out / "tasks" / "train.jsonl")
    held_out = read_jsonl(out / "tasks" / "eval.jsonl")
    assert len(train) == 8 and len(held_out) == 4
    assert {t["meta"]["scorer"] for t in train} == {"numeric", "math-verify", "exact"}
    results = json.loads((out / "eval" / "results.json").read_text())
    # The teacher answers every held-out task right, under the tasks' own scorers.
    assert results["teacher"]["my_tasks_heldout"]["success_mean"] == 1.0
    assert {"student_init", "bc_init", "score_sft", "score_rl"} <= set(results)
    assert "my_tasks_heldout" in captured.out and (out / "report.html").exists()


def write(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "tasks.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_scorers_of_a_task_line(tmp_path, monkeypatch):
    (tmp_path / "my_scorer_mod.py").write_text(
        "def starts_right(prediction, answer):\n    return prediction.lower().startswith(answer.lower())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = write(tmp_path,
              '{"question": "q1", "answer": "2.5", "scorer": "numeric"}',
              '{"question": "q2", "answer": "\\\\frac{1}{2}", "scorer": "math-verify"}',
              '{"question": "q3", "answer": ["New York City", "NYC"], "scorer": "f1"}',
              '{"question": "q4", "answer": "Paris", "scorer": "my_scorer_mod:starts_right", "tools": ["web_search"]}')
    t = load_benchmark(p)
    assert is_correct(t[0], "\\boxed{5/2}") and not is_correct(t[0], "2.6")
    assert is_correct(t[1], "0.5") and not is_correct(t[1], "1/3")
    assert score(t[2], "New York") == pytest.approx(0.8) and not is_correct(t[2], "New York")
    assert is_correct(t[3], "Paris, France") and not is_correct(t[3], "Lyon")
    assert t[3].tools == ["web_search", "final_answer_print"] and t[0].tools == ["python", "final_answer_print"]


@pytest.mark.parametrize("line, message", [
    ('{"question": "q", "answer": "1", "scorer": "fuzzy"}', "field 'scorer': unknown scorer 'fuzzy'"),
    ('{"question": "q", "answer": "1", "scorer": "no_such_module_x:f"}', "cannot import module 'no_such_module_x'"),
    ('{"question": "q", "answer": "1", "scorer": "math:no_such_fn"}', "module 'math' has no 'no_such_fn'"),
    ('{"question": "q", "answer": "1", "tools": ["shell"]}', "field 'tools': unknown tool 'shell'"),
    ('{"question": "q", "answer": "1", "tools": "python"}', "field 'tools': expected a list"),
    ('{"answer": "1"}', "field 'question'"),
])
def test_a_bad_line_names_file_line_and_field(tmp_path, line, message):
    p = write(tmp_path, '{"question": "fine", "answer": "1", "scorer": "exact"}', line)
    with pytest.raises(DataError) as e:
        load_benchmark(p)
    assert f"{p}:2" in str(e.value) and message in str(e.value)
