"""Built-in suites: determinism, disjoint splits, solutions, knowledge base, tools."""

from __future__ import annotations

import re

import pytest

from score_distill.tasks.knowledge_base import get_kb
from score_distill.tasks.registry import make_tasks, preview_tasks, tools_for
from score_distill.tasks.scoring import is_correct
from score_distill.tasks.search_suite import QUOTE
from score_distill.trajectory import Task
from score_distill.utils.jsonl import read_jsonl, write_jsonl


@pytest.mark.parametrize("suite", ["math", "search"])
def test_same_args_same_tasks_and_ids(suite):
    a = make_tasks(suite, 5, 3, seed=4)
    b = make_tasks(suite, 5, 3, seed=4)
    assert [t.model_dump() for t in a] == [t.model_dump() for t in b]
    assert [t.id for t in a] == [f"{suite}-train-s4-h3-{i:05d}" for i in range(5)]
    # A later slice regenerates the same tasks on its own.
    assert make_tasks(suite, 2, 3, seed=4, start=3)[0].model_dump() == a[3].model_dump()


@pytest.mark.parametrize("suite", ["math", "search"])
def test_train_and_eval_are_disjoint(suite):
    train = make_tasks(suite, 40, 2, seed=0, split="train")
    ev = make_tasks(suite, 40, 2, seed=0, split="eval")
    assert not {t.question for t in train} & {t.question for t in ev}
    assert len({t.question for t in train}) == 40
    if suite == "search":
        assert train[0].meta["kb_seed"] != ev[0].meta["kb_seed"]


@pytest.mark.parametrize("suite", ["math", "search"])
@pytest.mark.parametrize("horizon", [1, 2, 5, 8])
def test_solution_shape(suite, horizon):
    for t in make_tasks(suite, 5, horizon, seed=1):
        sol = t.meta["solution"]
        assert t.meta["horizon"] == horizon and t.meta["suite"] == suite
        assert sol[0]["kind"] == "plan" and sol[0]["thought"] and not sol[0]["code"]
        acts = sol[1:]
        assert len(acts) == (horizon if suite == "math" else horizon + 1)
        assert all(a["kind"] == "action" and a["thought"] and a["code"] and a["value"] for a in acts)
        assert "final_answer_print(" in acts[-1]["code"]
        assert not any("final_answer_print(" in a["code"] for a in acts[:-1])
        assert acts[-1]["value"] == t.answer and is_correct(t, t.answer)
        assert t.answer not in sol[0]["thought"]  # the plan never gives the answer away


def test_math_questions_vary_and_need_big_numbers():
    ts = make_tasks("math", 60, 3, seed=2)
    openings = {t.question.split(" ")[0] for t in ts}
    assert len(openings) >= 3  # several templates
    ops = {a["op"] for t in ts for a in t.meta["solution"][1:]}
    assert len(ops) >= 10
    assert any("/" in t.answer for t in make_tasks("math", 80, 4, seed=3))  # exact fractions occur


def test_search_question_chain_is_in_the_documents():
    for t in make_tasks("search", 10, 4, seed=3):
        kb = get_kb(t.meta["kb_seed"])
        chain, rels = t.meta["chain"], t.meta["relations"]
        assert chain[0] in t.question or chain[0][0].upper() + chain[0][1:] in t.question
        for i, r in enumerate(rels):
            assert kb.entities[chain[i]].facts[r] == chain[i + 1]
            found = kb.search(chain[i])
            assert chain[i + 1] in found  # the hop's page is in the results...
        assert len(set(chain)) == len(chain)
        # ...and the answer never appears in the question
        assert not re.search(re.escape(kb.entities[chain[-1]].core), t.question)


def test_search_reads_quote_the_sentence_they_read_from():
    """Each read quotes, word for word, the sentence of the hop's search results that names the next
    entity, so the demonstration shows where the entity is; the quote is what the search showed."""
    for t in make_tasks("search", 10, 3, seed=5):
        kb = get_kb(t.meta["kb_seed"])
        chain, acts = t.meta["chain"], t.meta["solution"][1:]
        for i in range(len(chain) - 1):
            quote = QUOTE.match(acts[i + 1]["thought"]).group(1)
            assert quote in kb.search(chain[i])  # what the student's own search prints
            assert chain[i + 1] in quote or chain[i + 1][0].upper() + chain[i + 1][1:] in quote
            assert f"{chain[i + 1]!r}" in acts[i + 1]["code"]  # the next search or the answer uses it


def test_kb_has_twins_and_unique_cores():
    kb = get_kb(0)
    cores = [e.core.lower() for e in kb.entities.values()]
    assert len(cores) == len(set(cores))
    assert all(a not in b for a in cores for b in cores if a != b)
    twins = [e for e in kb.entities.values() if e.twin]
    assert len(twins) > 20
    e = twins[0]
    assert sum(x != y for x, y in zip(e.core.lower(), kb.entities[e.twin].core.lower())) == 1


def test_tools_for_survives_jsonl_roundtrip(tmp_path):
    tasks = make_tasks("search", 2, 2, seed=9) + make_tasks("math", 1, 2, seed=9)
    write_jsonl(tmp_path / "t.jsonl", tasks)
    back = read_jsonl(tmp_path / "t.jsonl", Task)
    tools = tools_for(back[0])
    assert set(tools) == {"web_search"}
    assert back[0].meta["chain"][1] in tools["web_search"](back[0].meta["chain"][0])
    assert tools_for(back[2]) == {}
    qa = Task(id="x", question="q", answer=["a"], tools=["python", "web_search", "final_answer_print"])
    with pytest.raises(ValueError, match="no search backend"):
        tools_for(qa)
    assert tools_for(qa, search=lambda q: "hit")["web_search"]("q") == "hit"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown suite"):
        make_tasks("chess", 1, 2)
    with pytest.raises(ValueError, match="split"):
        make_tasks("math", 1, 2, split="test")
    with pytest.raises(ValueError, match="horizon"):
        make_tasks("math", 1, 0)


def test_preview():
    text = preview_tasks("math", 2, 3, seed=1)
    assert text.count("== math-train-s1-h3-") == 2 and "[plan]" in text and "->" in text
