"""LLM answer judge for benchmarks scored by "accuracy (LLM judge)".

Deterministic checks come first: when :func:`scoring.is_correct` accepts the answer (math_verify,
exact match), or the task is a built-in suite with exact answers, no model is called. Otherwise
the judge model gets question, gold and answer and must reply with exactly the JSON object
``{"equivalent": bool, "reason": str}``. Anything else (prose, extra keys, a string "true") is
retried once and then recorded as a failure: never "the word true appears in the reply".
Verdicts are cached on disk (JSONL, crash-safe), keyed by a hash of question, gold, answer and
judge model, so re-scoring costs nothing; all pending items go to the policy as one batch.

Evaluation (``eval.judge`` in the run configuration, ``score-distill eval --judge-endpoint``) uses it
where the paper scores with an LLM judge: the paper's benchmarks whose metric is "accuracy" (math and
deep search). QA benchmarks keep token F1, the built-in suites their exact checks, as in the paper; a
user's task file is scored by its own rule, and a task whose file names a ``scorer`` is never judged:
the judge does not override the user's scorer, not even when asked directly (:meth:`AnswerJudge.judge`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from score_distill.models.base import Policy, SamplingParams
from score_distill.trajectory import Task, Trajectory, Usage
from score_distill.utils.jsonl import DataError, append_jsonl, iter_json_lines

from .benchmarks import BENCHMARKS
from .scoring import is_correct

JUDGE_SYSTEM = ("You compare a candidate answer with the reference answer of a question. Decide whether they "
                "are equivalent: the same value, entity or statement, allowing different formatting, units "
                "written differently, or extra explanation around a correct answer. A partially correct, "
                "vaguer or hedged answer is not equivalent. Reply with only a JSON object: "
                '{"equivalent": true or false, "reason": "one short sentence"}')
JUDGE_TEMPLATE = "Question:\n{question}\n\nReference answer:\n{gold}\n\nCandidate answer:\n{answer}"


class JudgeReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    equivalent: StrictBool
    reason: str


JUDGE_SCHEMA = JudgeReply.model_json_schema()


@dataclass
class JudgeResult:
    equivalent: bool | None  # None: the judge failed (see ``failure``)
    reason: str = ""
    source: str = "llm"  # "deterministic" | "cache" | "llm" | "failure"
    failure: str | None = None


def parse_reply(text: str) -> JudgeReply:
    """Strict: the whole reply is the JSON object (a ```json fence around it is tolerated)."""
    t = text.strip()
    m = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", t, re.S)
    if m:
        t = m.group(1)
    try:
        obj = json.loads(t)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg})") from None
    try:
        return JudgeReply.model_validate(obj)
    except ValidationError as e:
        raise ValueError(f"JSON does not match the schema: {e.errors()[0]['msg']}") from None


class AnswerJudge:
    def __init__(self, policy: Policy, cache_path: str | os.PathLike | None = None, *, retries: int = 1,
                 max_new_tokens: int = 256, batch_size: int = 64):
        self.policy = policy
        self.retries = retries
        self.batch_size = batch_size
        # Greedy and seeded: a pinned judge gives the same verdict on every re-run.
        self.params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, json_schema=JUDGE_SCHEMA, seed=0)
        self.usage = Usage()
        self.cache_path = Path(cache_path) if cache_path else None
        self._cache: dict[str, dict] = {}
        if self.cache_path and self.cache_path.exists():
            for lineno, obj in iter_json_lines(self.cache_path):
                if not isinstance(obj.get("key"), str) or not isinstance(obj.get("equivalent"), bool):
                    raise DataError(
                        self.cache_path, lineno, "judge cache record needs 'key' and a boolean 'equivalent'")
                self._cache[obj["key"]] = obj

    def key(self, task: Task, answer: str) -> str:
        blob = json.dumps([task.question, task.answer, answer, getattr(self.policy, "name", "")], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _chat(self, task: Task, answer: str) -> list[dict[str, str]]:
        gold = " | ".join(task.answer) if isinstance(task.answer, list) else task.answer
        return [{"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": JUDGE_TEMPLATE.format(question=task.question, gold=gold, answer=answer)}]

    def judge(self, items: list[tuple[Task, str | None]]) -> list[JudgeResult]:
        results: list[JudgeResult | None] = [None] * len(items)
        pending: list[int] = []
        first: dict[str, int] = {}  # identical (task, answer) pairs, e.g. across sampling seeds, are asked once
        dup: dict[int, int] = {}
        for i, (task, answer) in enumerate(items):
            if answer is None or not str(answer).strip():
                results[i] = JudgeResult(False, "no answer", "deterministic")
            elif is_correct(task, answer):
                results[i] = JudgeResult(True, "deterministic match", "deterministic")
            elif task.meta.get("scorer"):  # the task file's own rule has the last word
                results[i] = JudgeResult(False, f"the task's scorer {task.meta['scorer']!r} rejects it",
                                         "deterministic")
            elif task.meta.get("suite") in ("math", "search"):
                results[i] = JudgeResult(False, "exact answer differs", "deterministic")
            elif (hit := self._cache.get(key := self.key(task, answer))) is not None:
                results[i] = JudgeResult(hit["equivalent"], hit.get("reason", ""), "cache")
            elif key in first:
                dup[i] = first[key]
            else:
                first[key] = i
                pending.append(i)
        for start in range(0, len(pending), self.batch_size):
            self._judge_llm(items, pending[start: start + self.batch_size], results)
        for i, j in dup.items():
            r = results[j]
            results[i] = r if r is None or r.source == "failure" else JudgeResult(r.equivalent, r.reason, "cache")
        return [r for r in results if r is not None]

    def _judge_llm(self, items, idx: list[int], results: list) -> None:
        todo, errors = list(idx), {i: "" for i in idx}
        for _attempt in range(self.retries + 1):
            if not todo:
                break
            outs = self.policy.generate([self._chat(*items[i]) for i in todo], self.params)
            retry = []
            for i, c in zip(todo, outs):
                self.usage.add(Usage(calls=1, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                                     seconds=c.seconds))
                if c.error:
                    errors[i] = f"backend error: {c.error}"
                    retry.append(i)
                    continue
                try:
                    rep = parse_reply(c.text)
                except ValueError as e:
                    errors[i] = str(e)
                    retry.append(i)
                    continue
                task, answer = items[i]
                results[i] = JudgeResult(rep.equivalent, rep.reason, "llm")
                rec = {"key": self.key(task, answer), "equivalent": rep.equivalent, "reason": rep.reason,
                       "task_id": task.id, "judge": getattr(self.policy, "name", "")}
                self._cache[rec["key"]] = rec
                if self.cache_path:
                    append_jsonl(self.cache_path, [rec])
            todo = retry
        for i in todo:
            self.usage.failures += 1
            results[i] = JudgeResult(None, "", "failure", failure=errors[i] or "no valid reply")

    def is_correct(self, task: Task, answer: str | None) -> bool:
        """A failed judgement counts as not correct (and is visible in ``usage.failures``)."""
        return bool(self.judge([(task, answer)])[0].equivalent)


# --------------------------------------------------------------------------- evaluation


class JudgeConfig(BaseModel):
    """The answer judge of evaluation: a model behind an OpenAI-compatible endpoint."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    model: str = Field(description="Model name served by the endpoint.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    max_concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, description="Retries of a failed request (transport errors).")
    invalid_reply_retries: int = Field(1, ge=0, description="Re-asks after a reply that is not the JSON verdict.")
    cache: str | None = Field(None, description="JSONL verdict cache (default: answer_judge_cache.jsonl in the "
                              "evaluation folder); a resumed evaluation never asks twice.")


def make_answer_judge(cfg: JudgeConfig | None, default_cache: str | os.PathLike) -> AnswerJudge | None:
    """The configured judge over an :class:`OpenAIPolicy`, or None when none is configured."""
    if cfg is None:
        return None
    from score_distill.models.openai_compat import OpenAIPolicy

    policy = OpenAIPolicy(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, max_concurrency=cfg.max_concurrency,
                          timeout_s=cfg.timeout_s, max_retries=cfg.max_retries)
    return AnswerJudge(policy, cfg.cache or default_cache, retries=cfg.invalid_reply_retries)


def judged(task: Task) -> bool:
    """Whether the paper scores this task's answers with an LLM judge: a task of one of the paper's "accuracy"
    benchmarks (``BENCHMARKS``), and never one whose task file names its own ``scorer``. A user's task file,
    a QA benchmark and the built-in suites keep their deterministic rules."""
    if task.meta.get("scorer") or task.meta.get("suite"):
        return False
    spec = BENCHMARKS.get(str(task.meta.get("benchmark", "")))
    return spec is not None and spec.metric == "accuracy" and task.meta.get("metric", "accuracy") == "accuracy"


def apply_judge(trajectories: list[Trajectory], judge: AnswerJudge) -> dict[str, int]:
    """Score judge-scored tasks by the judge (deterministic checks first, cache next), in place.

    ``score`` and ``outcome`` follow the verdict; ``meta["judge"]`` says where it came from. A failed
    judgement (a reply that is not the JSON verdict) scores 0 and is counted, never guessed; an endpoint
    that does not answer raises :class:`~score_distill.user_errors.EndpointError`. Returns counts by source.
    """
    todo = [t for t in trajectories if judged(t.task)]
    counts: Counter[str] = Counter()
    results = judge.judge([(t.task, t.final_answer) for t in todo])
    down = next((r.failure for r in results if r.failure and r.failure.startswith("backend error")), None)
    if down is not None:
        # An unreachable judge must not turn into scores of 0: stop; verdicts so far are cached, a rerun resumes.
        from score_distill.user_errors import EndpointError  # here: user_errors imports the config, which imports us

        raise EndpointError(f"answer judge {getattr(judge.policy, 'name', '')}: {down}; the verdicts obtained "
                               "so far are cached, run the evaluation again once the endpoint answers")
    for t, r in zip(todo, results):
        counts[r.source] += 1
        ok = bool(r.equivalent)
        t.score = 1.0 if ok else 0.0
        if t.final_answer is not None and t.outcome in ("correct", "wrong"):
            t.outcome = "correct" if ok else "wrong"
        verdict: dict[str, Any] = {"source": r.source, "equivalent": r.equivalent,
                                   "judge": getattr(judge.policy, "name", "")}
        if r.failure:
            verdict["failure"] = r.failure
        t.meta["judge"] = verdict
    return dict(counts)
