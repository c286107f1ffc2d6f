"""Is a rollout's key step "the same step" as the teacher's (or as the student's original mistake)?

Deterministic checks first, because they are free, exact and reproducible (the reference asks a 7B
LLM for every pair): same code after AST normalisation, same execution result, or for plans a text
similarity threshold. Only when they all say no, and a judge is configured, an LLM judge decides,
answering strict JSON; its verdicts are cached on disk so a resumed run never pays twice.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from score_distill.models.base import Policy, SamplingParams
from score_distill.rl.config import EquivalenceConfig
from score_distill.trajectory import Step
from score_distill.utils.jsonl import append_jsonl, read_jsonl

_BUILTINS = frozenset(dir(builtins))
_WS = re.compile(r"\s+")


class _Canon(ast.NodeTransformer):
    """Rename every name the code itself binds to v0, v1, ... in order of first appearance.

    Free names (builtins, tools, variables from earlier steps, modules) keep their spelling, since
    they refer to something outside the step and renaming them would equate different programs.
    """

    def __init__(self, bound: set[str]):
        self.bound = bound
        self.map: dict[str, str] = {}

    def _n(self, name: str) -> str:
        if name not in self.bound:
            return name
        return self.map.setdefault(name, f"v{len(self.map)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._n(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._n(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._n(node.name)
        _drop_docstring(node)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.name = self._n(node.name)
        _drop_docstring(node)
        self.generic_visit(node)
        return node

    def visit_alias(self, node: ast.alias) -> ast.AST:
        if node.asname:
            node.asname = self._n(node.asname)
        return node


def _drop_docstring(node: ast.AST) -> None:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        if isinstance(body[0].value.value, str):
            body.pop(0)
            if not body:
                body.append(ast.Pass())


def _bound_names(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.alias) and node.asname:
            out.add(node.asname)
    return out - _BUILTINS


def normalize_code(code: str) -> str:
    """A canonical form of Python code: AST dump with comments, docstrings and local names normalised.

    Code that does not parse falls back to whitespace-collapsed text (still deterministic).
    """
    try:
        tree = ast.parse(code or "")
    except SyntaxError:
        return "<unparsed>" + _WS.sub(" ", (code or "").strip())
    _drop_docstring(tree)
    tree = _Canon(_bound_names(tree)).visit(tree)
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def normalize_text(text: str) -> str:
    return _WS.sub(" ", (text or "").strip()).lower()


def plan_similarity(a: str, b: str) -> float:
    """Word-level similarity in [0, 1] (difflib ratio), robust to re-wrapping and case."""
    wa, wb = normalize_text(a).split(), normalize_text(b).split()
    if not wa and not wb:
        return 1.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


# What the sandbox (and the reference's interpreter) print for a step that printed nothing. Two silent
# steps have not shown the same result: they have shown none, so silence is no evidence of equivalence.
SILENT_OUTPUTS = frozenset({"", "none", "(no output)", "execution successful, no output."})


def _clean_observation(step: Step, silent_matches: bool = False) -> str | None:
    """The step's output when it is usable evidence of equivalence (non-empty, not an error)."""
    if step.error is not None:
        return None
    obs = normalize_text(step.observation)
    if not obs or obs == "none" or (obs in SILENT_OUTPUTS and not silent_matches):
        return None
    return obs


@dataclass(frozen=True)
class Verdict:
    equivalent: bool
    method: str  # "same_code" | "same_result" | "same_final_answer" | "plan_similarity" | "judge" | "none" | "kind"


def deterministic_equivalence(candidate: Step, reference: Step, cfg: EquivalenceConfig) -> Verdict:
    if candidate.kind != reference.kind:
        return Verdict(False, "kind")
    if candidate.kind == "plan":
        sim = plan_similarity(candidate.thought, reference.thought)
        return Verdict(sim >= cfg.plan_similarity, "plan_similarity")
    if cfg.same_code and candidate.code.strip() and normalize_code(candidate.code) == normalize_code(reference.code):
        return Verdict(True, "same_code")
    if cfg.same_observation:
        if candidate.final_answer is not None and reference.final_answer is not None:
            if normalize_text(candidate.final_answer) == normalize_text(reference.final_answer):
                return Verdict(True, "same_final_answer")
        a = _clean_observation(candidate, cfg.silent_outputs_match)
        b = _clean_observation(reference, cfg.silent_outputs_match)
        if a is not None and a == b:
            return Verdict(True, "same_result")
    return Verdict(False, "none")


# --- LLM judge -----------------------------------------------------------------------------


class JudgeAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "true" (a string) is not a boolean
    equivalent: bool
    reason: str = ""


JUDGE_SCHEMA = JudgeAnswer.model_json_schema()

JUDGE_PROMPT = """You compare two steps of an agent solving the same task at the same point.
Two steps are equivalent when they take the same approach and compute the same thing: wording, variable names
and formatting do not matter; a different method, a different quantity or a different result does.

Task: {question}

Step A:
{a}
Output of step A: {a_obs}

Step B:
{b}
Output of step B: {b_obs}

Answer with a JSON object only: {{"equivalent": true or false, "reason": "one sentence"}}"""


class _CacheRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    equivalent: bool
    reason: str = ""
    judge: str = ""


def parse_judge_reply(text: str) -> JudgeAnswer | None:
    """Strict: the reply must be one JSON object matching the schema (the reference counted any "true" as yes)."""
    try:
        obj = json.loads((text or "").strip())
    except json.JSONDecodeError:
        return None
    try:
        return JudgeAnswer.model_validate(obj)
    except ValidationError:
        return None


class StepJudge:
    """LLM judge over any :class:`Policy`, batched, with a JSONL cache keyed by judge name + both steps."""

    def __init__(self, policy: Policy, cache_path: str | os.PathLike | None = None, *, max_new_tokens: int = 256,
                 retries: int = 1):
        self.policy = policy
        self.cache_path = Path(cache_path) if cache_path else None
        self.max_new_tokens = max_new_tokens
        self.retries = retries
        self.cache: dict[str, bool] = {}
        self.calls = 0
        self.failures = 0
        if self.cache_path and self.cache_path.exists():
            for rec in read_jsonl(self.cache_path, _CacheRecord):
                self.cache[rec.key] = rec.equivalent

    def _key(self, question: str, a: Step, b: Step) -> str:
        blob = json.dumps(
            [getattr(self.policy, "name", ""), question, a.render(), a.observation, b.render(), b.observation])
        return hashlib.sha256(blob.encode()).hexdigest()

    def judge(self, pairs: Sequence[tuple[str, Step, Step]]) -> list[bool]:
        """One verdict per (question, candidate, reference).

        Replies still unparseable after the retries count as 'not equivalent'."""
        keys = [self._key(q, a, b) for q, a, b in pairs]
        todo: list[int] = []  # first occurrence of each uncached pair: identical pairs are asked once
        seen: set[str] = set()
        for i, k in enumerate(keys):
            if k not in self.cache and k not in seen:
                seen.add(k)
                todo.append(i)
        answers: dict[int, JudgeAnswer | None] = dict.fromkeys(todo)
        params = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0,
                                max_new_tokens=self.max_new_tokens, json_schema=JUDGE_SCHEMA, seed=0)
        pending = list(todo)
        for _attempt in range(1 + self.retries):
            if not pending:
                break
            chats = [[{"role": "user", "content": JUDGE_PROMPT.format(
                question=pairs[i][0], a=pairs[i][1].render(), a_obs=pairs[i][1].observation or "(none)",
                b=pairs[i][2].render(), b_obs=pairs[i][2].observation or "(none)")}] for i in pending]
            outs = self.policy.generate(chats, params)
            self.calls += len(chats)
            for i, out in zip(pending, outs):
                answers[i] = None if out.error else parse_judge_reply(out.text)
            pending = [i for i in pending if answers[i] is None]
        new = []
        for i in todo:
            ans = answers[i]
            if ans is None:
                self.failures += 1  # not cached: a later run may get a valid answer
                continue
            self.cache[keys[i]] = ans.equivalent
            new.append(_CacheRecord(key=keys[i], equivalent=ans.equivalent, reason=ans.reason,
                                    judge=getattr(self.policy, "name", "")))
        if self.cache_path and new:
            append_jsonl(self.cache_path, new)
        return [self.cache.get(k, False) for k in keys]


class EquivalenceChecker:
    """Deterministic checks, then (optionally) the judge for the pairs they reject, in one batch."""

    def __init__(self, cfg: EquivalenceConfig | None = None, judge: StepJudge | None = None):
        self.cfg = cfg or EquivalenceConfig()
        self.judge = judge if self.cfg.use_judge else None

    def check_many(self, pairs: Sequence[tuple[str, Step, Step]]) -> list[Verdict]:
        verdicts = [deterministic_equivalence(a, b, self.cfg) for _, a, b in pairs]
        if self.judge is None:
            return verdicts
        ask = [i for i, v in enumerate(verdicts) if not v.equivalent and v.method != "kind"]
        if ask:
            for i, eq in zip(ask, self.judge.judge([pairs[i] for i in ask])):
                verdicts[i] = Verdict(eq, "judge")
        return verdicts

    def check(self, question: str, candidate: Step, reference: Step) -> Verdict:
        return self.check_many([(question, candidate, reference)])[0]
