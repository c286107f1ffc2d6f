"""``score-distill eval`` with the LLM answer judge: the student and the judge behind real OpenAI-compatible HTTP
servers on 127.0.0.1 (FakeOpenAIServer), on a paper benchmark the paper scores with a judge."""

from __future__ import annotations

import json

from score_distill.agent import format as fmt
from score_distill.cli import main
from score_distill.testing import FakeOpenAIServer

ANSWER = "two hundred and four"  # aime24's first answer is 204: exact match and math-verify say no


def student(req: dict) -> str:
    if not any(m["role"] == "assistant" for m in req["messages"]):
        return fmt.render_plan("Solve it, then answer.")
    return fmt.render_action("Report the result.", f"final_answer_print({ANSWER!r})")


def judge(req: dict) -> str:
    cand = req["messages"][-1]["content"].split("Candidate answer:\n", 1)[1]
    return json.dumps({"equivalent": cand == ANSWER, "reason": "the same number in words"})


def _eval(tmp_path, stu, *extra: str) -> int:
    return main(["eval", "--endpoint", stu.base_url, "--model-name", "student", "--benchmark", "aime24",
                 "--n", "1", "--seeds", "0", "--max-steps", "3", "--max-concurrency", "2",
                 "--out", str(tmp_path / "out"), *extra])


def _success(tmp_path) -> dict:
    return json.loads((tmp_path / "out" / "student" / "results.json").read_text())["aime24"]


def test_eval_scores_a_judged_benchmark_with_the_judge_and_caches_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-judge-secret")
    with FakeOpenAIServer(student, model_names=["student"]) as stu, \
            FakeOpenAIServer(judge, model_names=["judge-model"]) as jud:
        flags = ["--judge-endpoint", jud.base_url, "--judge-model", "judge-model", "--judge-api-key-env",
                 "MY_JUDGE_KEY", "--judge-max-retries", "0"]
        # Without the judge the answer in words scores 0.
        assert _eval(tmp_path, stu) == 0
        assert _success(tmp_path)["success_mean"] == 0.0 and "judge" not in _success(tmp_path)
        assert _eval(tmp_path, stu, *flags) == 0
        res = _success(tmp_path)
        assert res["success_mean"] == 1.0 and res["judge"] == {"llm": 1}
        posts = jud.chat_requests
        assert len(posts) == 1 and json.loads(posts[0].body)["model"] == "judge-model"
        assert posts[0].headers.get("authorization") == "Bearer sk-judge-secret"  # the key from the environment
        assert "sk-judge-secret" not in capsys.readouterr().err
        # Again: the verdict comes from the cache, the judge is not asked.
        assert _eval(tmp_path, stu, *flags) == 0
        assert _success(tmp_path)["judge"] == {"cache": 1} and len(jud.chat_requests) == 1
        cache = [json.loads(x) for x in (tmp_path / "out" / "answer_judge_cache.jsonl").read_text().splitlines()]
        assert [c["equivalent"] for c in cache] == [True]
        # --no-judge switches it off whatever the other options say.
        assert _eval(tmp_path, stu, *flags, "--no-judge") == 0
        assert _success(tmp_path)["success_mean"] == 0.0 and len(jud.chat_requests) == 1


def test_eval_judge_options_are_checked_before_anything_runs(tmp_path, capsys):
    with FakeOpenAIServer(student, model_names=["student"]) as stu:
        assert _eval(tmp_path, stu, "--judge-endpoint", "http://127.0.0.1:9/v1") == 2
        assert "--judge-model" in capsys.readouterr().err
        assert _eval(tmp_path, stu, "--judge-endpoint", stu.base_url, "--judge-model", "j",
                     "--judge-max-concurrency", "0") == 2
        assert "--judge-max-concurrency" in capsys.readouterr().err
        assert _eval(tmp_path, stu, "--judge-endpoint", "http://127.0.0.1:9/v1", "--judge-model", "j") == 2
        err = capsys.readouterr().err
        assert "answer judge" in err and "127.0.0.1:9" in err and "Traceback" not in err
        assert len(stu.chat_requests) == 0  # the student was never asked
