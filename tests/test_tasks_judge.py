"""AnswerJudge: deterministic first, strict JSON, retry then failure, disk cache, batching."""

from __future__ import annotations

import json

from score_distill.models.base import Completion, Policy
from score_distill.tasks.judge import AnswerJudge, parse_reply
from score_distill.tasks.registry import make_tasks
from score_distill.trajectory import Task


class ScriptedPolicy:
    """A Policy whose replies come from a function of the prompt; records every batch."""

    name = "scripted-judge"

    def __init__(self, reply):
        self.reply = reply
        self.batches: list[int] = []

    def generate(self, chats, params):
        self.batches.append(len(chats))
        return [Completion(text=self.reply(c[-1]["content"]), prompt_tokens=10, completion_tokens=5) for c in chats]


def _task(i, gold="Paris"):
    return Task(id=f"t{i}", question=f"Capital number {i}?", answer=gold, meta={"kind": "deep"})


def test_deterministic_first_then_llm_and_cache(tmp_path):
    pol = ScriptedPolicy(lambda p: json.dumps({"equivalent": "Paris, France" in p, "reason": "same city"}))
    assert isinstance(pol, Policy)
    j = AnswerJudge(pol, tmp_path / "judge.jsonl")
    items = [(_task(0), "Paris"), (_task(1), "Paris, France"), (_task(2), "Lyon"), (_task(3), None),
             (make_tasks("math", 1, 2, seed=1)[0], "12")]
    res = j.judge(items)
    assert [r.equivalent for r in res] == [True, True, False, False, False]
    assert [r.source for r in res] == ["deterministic", "llm", "llm", "deterministic", "deterministic"]
    assert pol.batches == [2] and j.usage.calls == 2 and j.usage.prompt_tokens == 20
    j2 = AnswerJudge(ScriptedPolicy(lambda p: "unused"), tmp_path / "judge.jsonl")
    res2 = j2.judge(items[1:3])
    assert [r.source for r in res2] == ["cache", "cache"] and j2.usage.calls == 0


def test_strict_parsing_retry_then_failure():
    replies = iter(['Sure! {"equivalent": true, "reason": "x"}',  # prose around JSON: invalid
                    '```json\n{"equivalent": true, "reason": "ok"}\n```'])
    j = AnswerJudge(ScriptedPolicy(lambda p: next(replies)))
    (r,) = j.judge([(_task(0), "the city of Paris, France")])
    assert r.equivalent is True and r.source == "llm"
    always_bad = ['"true"', '{"equivalent": "true", "reason": "x"}', '{"equivalent": true}',
                  '{"equivalent": true, "reason": "x", "extra": 1}', "TRUE, they are equivalent"]
    for bad in always_bad:
        j = AnswerJudge(ScriptedPolicy(lambda p, bad=bad: bad), retries=1)
        (r,) = j.judge([(_task(0), "Parisss")])
        assert r.equivalent is None and r.source == "failure" and r.failure, bad
        assert j.usage.failures == 1 and j.usage.calls == 2
        assert not j.is_correct(_task(0), "Parisss")


def test_batching_and_parse_reply():
    pol = ScriptedPolicy(lambda p: '{"equivalent": false, "reason": "different"}')
    j = AnswerJudge(pol, batch_size=3)
    j.judge([(_task(i), f"Lyon {i}") for i in range(7)])
    assert pol.batches == [3, 3, 1]
    assert parse_reply('  {"equivalent": false, "reason": ""} ').equivalent is False


# ----------------------------------------------------------------------------- in evaluation, over real HTTP


PAPER_NAME = {"deep": "gaia", "math": "aime24", "qa": "hotpotqa"}  # a paper benchmark of each kind


def _bench(i: int, gold, kind: str, metric: str) -> Task:
    return Task(id=f"{kind}{i}", question=f"Question {kind} {i}?", answer=gold,
                meta={"benchmark": PAPER_NAME[kind], "kind": kind, "metric": metric})


def _run_jobs_answering(answers: dict[str, str], calls: list):
    """The policy side of evaluation: each task gets the recorded answer (the judge is what is tested)."""
    from score_distill.tasks.scoring import score
    from score_distill.trajectory import Trajectory

    def run(jobs):
        calls.append(len(jobs))
        out = []
        for tasks, _seed in jobs:
            trajs = []
            for t in tasks:
                a = answers[t.id]
                trajs.append(Trajectory(task=t, final_answer=a, score=score(t, a),
                                        outcome="correct" if score(t, a) == 1.0 else "wrong"))
            out.append(trajs)
        return out

    return run


def test_evaluation_scores_judged_benchmarks_with_the_judge_and_never_asks_twice(tmp_path):
    from score_distill.config import load_config
    from score_distill.stages.evaluate import evaluate_policy
    from score_distill.tasks.judge import JudgeConfig, make_answer_judge
    from score_distill.testing.openai_server import FakeOpenAIServer

    suites = {
        "deep": [_bench(0, ["Paris"], "deep", "accuracy"), _bench(1, ["Paris"], "deep", "accuracy"),
                 _bench(2, ["Paris"], "deep", "accuracy"), _bench(3, ["Paris"], "deep", "accuracy")],
        "math": [_bench(0, "\\frac{1}{2}", "math", "accuracy"), _bench(1, "12", "math", "accuracy")],
        "qa": [_bench(0, ["Paris"], "qa", "f1")],
    }
    answers = {"deep0": "Paris", "deep1": "It is Paris, the French capital", "deep2": "Lyon", "deep3": "unclear",
               "math0": "0.5", "math1": "twelve", "qa0": "Paris, France"}

    def responder(req):
        user = req["messages"][-1]["content"]
        assert "Reference answer" in user and req["temperature"] == 0.0
        cand = user.split("Candidate answer:\n", 1)[1]
        if cand == "unclear":
            return "I cannot tell."  # not the JSON verdict: retried once, then a recorded failure
        return json.dumps({"equivalent": "Paris" in cand or cand == "twelve", "reason": "compared"})

    cache = tmp_path / "eval" / "answer_judge_cache.jsonl"
    with FakeOpenAIServer(responder, model_names=["judge-model"]) as srv:
        cfg = JudgeConfig(base_url=srv.base_url, model="judge-model", max_retries=0)
        calls: list = []
        res = evaluate_policy(_run_jobs_answering(answers, calls), suites, [0, 1], tmp_path / "eval" / "p",
                              judge=make_answer_judge(cfg, cache))
        # Deterministic checks first: "Paris" (exact) and 0.5 == 1/2 (math-verify) never reach the judge;
        # QA keeps token F1. Asked: deep1, deep2, deep3 (+1 retry), math1 -- once each, both seeds share the cache.
        asked = [json.loads(r.body)["messages"][-1]["content"].split("Candidate answer:\n")[1]
                 for r in srv.chat_requests]
        assert sorted(asked) == sorted(["It is Paris, the French capital", "Lyon", "unclear", "unclear", "twelve"])
        n_first = len(srv.chat_requests)
        assert res["deep"]["success_mean"] == 0.5 and res["math"]["success_mean"] == 1.0
        assert res["deep"]["judge"]["failure"] == 2  # deep3 on both seeds, scored 0
        assert res["qa"]["success_mean"] < 1.0 and "judge" not in res["qa"]
        # A resumed (or repeated) evaluation: the trajectories are on disk and the verdicts in the cache.
        res2 = evaluate_policy(_run_jobs_answering(answers, calls), suites, [0, 1], tmp_path / "eval" / "p",
                               judge=make_answer_judge(cfg, cache))
        assert calls == [6]  # the policy ran once
        only_failures_again = [json.loads(r.body)["messages"][-1]["content"].endswith("unclear")
                               for r in srv.chat_requests[n_first:]]
        assert all(only_failures_again)  # nothing judged before is asked again; a failure is not cached
        assert {k: v["success_mean"] for k, v in res2.items()} == {k: v["success_mean"] for k, v in res.items()}
    assert [json.loads(x)["task_id"] for x in cache.read_text().splitlines()].count("deep1") == 1
    # Configurable from the run configuration.
    rc = load_config(None, preset="tiny",
                     overrides=[f"eval.judge.base_url={srv.base_url}", "eval.judge.model=judge-model"])
    assert rc.eval.judge.model == "judge-model"


def test_an_unreachable_judge_stops_the_evaluation_instead_of_scoring_zero(tmp_path):
    import pytest

    from score_distill.stages.evaluate import evaluate_policy
    from score_distill.tasks.judge import JudgeConfig, make_answer_judge
    from score_distill.testing.openai_server import FakeOpenAIServer, Fault
    from score_distill.user_errors import EndpointError

    suites = {"deep": [_bench(0, ["Paris"], "deep", "accuracy")]}
    with FakeOpenAIServer(lambda r: "unused", faults=[Fault.status(500)] * 4) as srv:
        judge = make_answer_judge(JudgeConfig(base_url=srv.base_url, model="fake-model", max_retries=0),
                                  tmp_path / "cache.jsonl")
        with pytest.raises(EndpointError, match="server_error|500"):
            evaluate_policy(_run_jobs_answering({"deep0": "Lyon"}, []), suites, [0], tmp_path / "p", judge=judge)
    assert (tmp_path / "p" / "deep" / "seed0.jsonl").exists()  # the episodes are kept for the rerun


def test_the_judge_never_overrides_a_task_files_own_scorer(tmp_path):
    """A judge that calls every answer equivalent, over real HTTP: it decides the paper benchmark's task, and
    none of a user's task file, with or without a scorer of its own."""
    from score_distill.stages.evaluate import evaluate_policy
    from score_distill.tasks.benchmarks import load_benchmark
    from score_distill.tasks.judge import JudgeConfig, judged, make_answer_judge
    from score_distill.testing.openai_server import FakeOpenAIServer

    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"id": "exact", "question": "Capital of France?", "answer": "Paris", "scorer": "exact"},
        {"id": "numeric", "question": "Half of 5?", "answer": "2.5", "scorer": "numeric"},
        {"id": "mv", "question": "Simplify x+x.", "answer": "2x", "scorer": "math-verify"},
        {"id": "plain", "question": "Capital of Italy?", "answer": "Rome"},
    ]) + "\n")
    mine = load_benchmark(f)
    assert not any(judged(t) for t in mine)
    paper = _bench(0, "\\frac{1}{2}", "math", "accuracy")
    assert judged(paper) and not judged(_bench(0, ["Paris"], "qa", "f1"))
    assert not judged(Task(id="x", question="q", answer="1", meta={"benchmark": "b", "metric": "accuracy"}))
    answers = {"mine-exact": "The capital is Lyon", "mine-numeric": "about two and a half",
               "mine-mv": "two x", "mine-plain": "Roma", "math0": "one half"}

    def always_equivalent(req):
        return json.dumps({"equivalent": True, "reason": "same"})

    with FakeOpenAIServer(always_equivalent, model_names=["judge-model"]) as srv:
        judge = make_answer_judge(JudgeConfig(base_url=srv.base_url, model="judge-model", max_retries=0),
                                  tmp_path / "cache.jsonl")
        res = evaluate_policy(_run_jobs_answering(answers, []), {"mine": mine, "aime24": [paper]}, [0],
                              tmp_path / "p", judge=judge)
        asked = [json.loads(r.body)["messages"][-1]["content"] for r in srv.chat_requests]
        # Asked directly, the judge still defers to the file's scorer and sends nothing.
        direct = judge.judge([(t, answers[t.id]) for t in mine[:3]])
        assert len(srv.chat_requests) == len(asked)
    assert len(asked) == 1 and asked[0].endswith("one half")
    assert res["aime24"]["success_mean"] == 1.0 and res["aime24"]["judge"] == {"llm": 1}
    assert res["mine"]["success_mean"] == 0.0 and "judge" not in res["mine"]
    assert [(r.equivalent, r.source) for r in direct] == [(False, "deterministic")] * 3
