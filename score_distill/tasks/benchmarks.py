"""Loaders for the paper's 12 evaluation benchmarks, and for any question/answer JSONL.

Files live in ``<data>/benchmarks/``; ``<data>`` is, in order: an explicit ``data_dir``, the
environment variable ``SCORE_DISTILL_DATA``, or ``../shared/data/score-official`` next to the
repository. A relative ``.jsonl`` path that does not exist as given is looked up in ``<data>`` too
(``seeds/math_bc_init_seed.jsonl``), so configurations name the released files without a machine path.
Quirks of the released files handled here: GAIA is split by level into three files;
``hle_500`` carries ``answer`` (and sometimes ``true_answer``); ``aime24`` has a worked ``solution``
(kept as ``meta["reference_solution"]``: ``meta["solution"]`` is reserved for oracle steps); ids
may be ints; answers may be ints (``aime25``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from score_distill.trajectory import Task
from score_distill.utils.jsonl import DataError, iter_json_lines

MATH_TOOLS = ["python", "final_answer_print"]
SEARCH_TOOLS = ["python", "web_search", "final_answer_print"]


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    files: tuple[str, ...]
    kind: str  # "math" | "qa" | "deep"
    metric: str  # "accuracy" (judge-backed) | "f1"


def _spec(name: str, files: str | tuple[str, ...], kind: str, metric: str) -> tuple[str, BenchmarkSpec]:
    return name, BenchmarkSpec(name, (files,) if isinstance(files, str) else files, kind, metric)


BENCHMARKS: dict[str, BenchmarkSpec] = dict([
    _spec("aime24", "aime24.jsonl", "math", "accuracy"),
    _spec("aime25", "aime25.jsonl", "math", "accuracy"),
    _spec("math500", "math_500.jsonl", "math", "accuracy"),
    _spec("olymmath", "olymmath.jsonl", "math", "accuracy"),
    _spec("hotpotqa", "hqa.jsonl", "qa", "f1"),
    _spec("2wiki", "2wiki.jsonl", "qa", "f1"),
    _spec("musique", "musiq.jsonl", "qa", "f1"),
    _spec("bamboogle", "bamboo.jsonl", "qa", "f1"),
    _spec("gaia", ("gaia-1.jsonl", "gaia-2.jsonl", "gaia-3.jsonl"), "deep", "accuracy"),
    _spec("gaia-1", "gaia-1.jsonl", "deep", "accuracy"),
    _spec("gaia-2", "gaia-2.jsonl", "deep", "accuracy"),
    _spec("gaia-3", "gaia-3.jsonl", "deep", "accuracy"),
    _spec("hle", "hle_500.jsonl", "deep", "accuracy"),
    _spec("webwalker", "webwalker.jsonl", "deep", "accuracy"),
    _spec("xbench", "xbench.jsonl", "deep", "accuracy"),
])
# The paper's 12 (GAIA counted once).
PAPER_BENCHMARKS = ("aime24", "aime25", "math500", "olymmath", "hotpotqa", "2wiki", "musique", "bamboogle",
                    "gaia", "hle", "xbench", "webwalker")
ALIASES = {"math_500": "math500", "hqa": "hotpotqa", "musiq": "musique", "bamboo": "bamboogle", "hle_500": "hle"}


DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "score-official"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The reference data folder (``benchmarks/``, ``seeds/``); an error naming where it looked when absent."""
    if explicit is not None:
        p, source = Path(explicit), "the path given"
    elif os.environ.get("SCORE_DISTILL_DATA"):
        p, source = Path(os.environ["SCORE_DISTILL_DATA"]), "SCORE_DISTILL_DATA"
    else:
        p, source = DEFAULT_DATA, "the default, ../shared/data/score-official beside the repository"
    if not p.is_dir():
        raise FileNotFoundError(f"reference data folder not found: {p} (from {source}); set SCORE_DISTILL_DATA "
                                "to the folder that holds benchmarks/ and seeds/")
    return p


def _answer(obj: dict, path: str | os.PathLike, lineno: int) -> str | list[str]:
    if "true_answer" in obj:
        a = obj["true_answer"]
    elif "answer" in obj:
        a = obj["answer"]
    else:
        raise DataError(path, lineno, "missing field 'true_answer' (or 'answer')")
    if isinstance(a, list):
        if not a or not all(isinstance(x, str | int | float) for x in a):
            raise DataError(path, lineno, "field 'true_answer': expected a non-empty list of strings")
        return [str(x) for x in a]
    if isinstance(a, bool) or not isinstance(a, str | int | float):
        raise DataError(path, lineno, f"field 'true_answer': expected a string or list, got {type(a).__name__}")
    return str(a)


def _tools(value: object, path: Path, lineno: int) -> list[str]:
    from score_distill.tasks.user_tasks import TOOLS

    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise DataError(path, lineno, "field 'tools': expected a list of tool names")
    unknown = [t for t in value if t not in TOOLS]
    if unknown:
        raise DataError(path, lineno, f"field 'tools': unknown tool {unknown[0]!r} (known: {', '.join(TOOLS)})")
    # The agent answers by calling final_answer_print: every task has it.
    return [*dict.fromkeys([*value, "final_answer_print"])]


def _scorer(value: object, path: Path, lineno: int) -> str:
    from score_distill.tasks.user_tasks import load_scorer

    if not isinstance(value, str):
        raise DataError(path, lineno, "field 'scorer': expected a string (exact, numeric, math-verify, f1 or "
                        "module:function)")
    try:
        load_scorer(value)
    except ValueError as e:
        raise DataError(path, lineno, f"field 'scorer': {e}") from None
    return value


def load_jsonl_tasks(path: str | os.PathLike, name: str | None = None, kind: str | None = None,
                     metric: str | None = None) -> list[Task]:
    """Tasks from a JSONL file with ``question`` and ``true_answer`` (or ``answer``) per line, and optionally
    ``id``, ``tools`` (python, web_search; final_answer_print is always there) and ``scorer`` (exact, numeric,
    math-verify, f1 or module:function; see ``user_tasks``)."""
    path = Path(path)
    name = name or path.stem
    tasks: list[Task] = []
    seen: set[str] = set()
    for lineno, obj in iter_json_lines(path):
        q = obj.get("question")
        if not isinstance(q, str) or not q.strip():
            raise DataError(path, lineno, "field 'question': missing or not a non-empty string")
        ans = _answer(obj, path, lineno)
        k = kind or ("qa" if isinstance(ans, list) else "math")
        orig = str(obj.get("id", lineno))
        tid = f"{name}-{orig}"
        if tid in seen:
            raise DataError(path, lineno, f"duplicate id {orig!r}")
        seen.add(tid)
        meta = {"benchmark": name, "kind": k, "metric": metric or ("f1" if k == "qa" else "accuracy"),
                "orig_id": obj.get("id", lineno), "file": path.name, "line": lineno}
        for extra in ("level", "answer_type", "category"):
            if extra in obj:
                meta[extra] = obj[extra]
        if "solution" in obj:
            meta["reference_solution"] = obj["solution"]
        tools = list(MATH_TOOLS if k == "math" else SEARCH_TOOLS)
        if "tools" in obj:
            tools = _tools(obj["tools"], path, lineno)
        if "scorer" in obj:
            meta["scorer"] = _scorer(obj["scorer"], path, lineno)
            if meta["scorer"] == "f1":
                meta["metric"] = "f1"
        tasks.append(Task(id=tid, question=q, answer=ans, source=name, tools=tools, meta=meta))
    return tasks


def load_benchmark(name_or_path: str | os.PathLike, data: str | os.PathLike | None = None) -> list[Task]:
    """A registered benchmark by name (see BENCHMARKS) or any JSONL file by path."""
    key = str(name_or_path)
    key = ALIASES.get(key, key)
    if key in BENCHMARKS:
        spec = BENCHMARKS[key]
        root = data_dir(data) / "benchmarks"
        out: list[Task] = []
        for f in spec.files:
            p = root / f
            if not p.exists():
                raise FileNotFoundError(f"benchmark file not found: {p}")
            out.extend(load_jsonl_tasks(p, name=key if len(spec.files) == 1 else Path(f).stem,
                                        kind=spec.kind, metric=spec.metric))
        for t in out:
            t.meta["benchmark"] = key
        return out
    p = Path(key)
    if p.suffix == ".jsonl" or p.exists():
        if not p.exists() and not p.is_absolute():
            try:
                in_data = data_dir(data) / p
            except FileNotFoundError as e:
                raise FileNotFoundError(f"benchmark file not found: {p} (not here, and {e})") from None
            if not in_data.exists():
                raise FileNotFoundError(f"benchmark file not found: {p} (nor {in_data})")
            p = in_data
        if not p.exists():
            raise FileNotFoundError(f"benchmark file not found: {p}")
        return load_jsonl_tasks(p)
    raise ValueError(f"unknown benchmark {key!r}; known: {', '.join(BENCHMARKS)} (or give a .jsonl path)")
