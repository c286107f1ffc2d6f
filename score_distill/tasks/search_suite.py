"""Multi-hop search questions over the fictional knowledge base (H hops = H dependent searches).

"In which city was the mentor of the founder of Zorvex Labs born?" is 3 hops: each hop is one
``web_search`` for the entity known so far and one read of the result to find the next entity.
The ground-truth solution is a plan, H search steps (value = the entity that hop reveals) and a
final step that submits the last entity, so a correct solution has H + 1 actions.
"""

from __future__ import annotations

import random
import re

from score_distill.trajectory import Task

from .knowledge_base import RELATIONS, KnowledgeBase, get_kb

TOOLS = ["python", "web_search", "final_answer_print"]
QUOTE = re.compile(r'The results say: "([^"]+)"')  # how a read cites its sentence (the oracle checks it was shown)

_INTROS = ["", "", "Use the search tool to answer. ", "Answer from the document collection. "]


def _question(kb: KnowledgeBase, chain: list[str], rels: list[str], rng: random.Random) -> str:
    np = chain[0]
    for r in rels[:-1]:
        np = RELATIONS[r].noun_phrase.format(x=np)
    return rng.choice(_INTROS) + rng.choice(RELATIONS[rels[-1]].questions).format(x=np)


def _plan(chain: list[str], rels: list[str]) -> str:
    parts = []
    subject = chain[0]
    for i, r in enumerate(rels):
        what = RELATIONS[r].plan.format(x=subject)
        if i == 0:
            parts.append(f"First I will search for {chain[0]} and read {what} from the results.")
        else:
            parts.append(f"Then I will search for that entity and read {what}.")
        subject = "it"
    parts.append("The last entity found is the answer, which I will submit with final_answer_print.")
    return " ".join(parts)


def solution_steps(chain: list[str], rels: list[str], quotes: list[str] | None = None) -> list[dict]:
    """The plan, one search per hop and the answer. With ``quotes`` (hop i's supporting sentence), each
    read quotes the sentence it takes the entity from instead of naming the entity alone: the teacher
    shows where in the results the entity is, so a small student learns to copy it out rather than guess."""
    steps: list[dict] = [{"kind": "plan", "thought": _plan(chain, rels), "code": "", "value": ""}]
    for i, r in enumerate(rels):
        subject = chain[i]
        what = RELATIONS[r].plan.format(x=subject)
        if i == 0:
            lead = "I need"
        elif quotes:
            lead = f'The results say: "{quotes[i - 1]}" Now I need'
        else:
            lead = f"From the results, the entity I was looking for is {subject}. Now I need"
        steps.append({
            "kind": "action",
            "thought": f"{lead} {what}, so I will search for {subject}.",
            "code": f"results_{i + 1} = web_search({subject!r})\nprint(results_{i + 1})",
            "value": chain[i + 1],
            "var": f"results_{i + 1}",
            "query": subject,
        })
    last = RELATIONS[rels[-1]].plan.format(x=chain[-2])
    said = f'The results say: "{quotes[-1]}"' if quotes else f"The results say that {last} is {chain[-1]}."
    steps.append({
        "kind": "action",
        "thought": f"{said} That answers the question.",
        "code": f"final_answer_print({chain[-1]!r})",
        "value": chain[-1],
        "var": "",
    })
    return steps


def make_search_task(task_id: str, kb_seed: int, horizon: int, rng: random.Random, seed: int) -> Task:
    """One H-hop question; resampled until its chain is valid and every hop's page is found by search."""
    if horizon < 1:
        raise ValueError(f"search horizon must be >= 1, got {horizon}")
    kb = get_kb(kb_seed)
    for _ in range(1000):
        got = kb.sample_chain(rng, horizon)
        if got is None:
            continue
        chain, rels = got
        # Every hop's search must surface the subject's own page first; else the task is unfair.
        if all(kb.search.search(e)[:1] and kb.search.search(e)[0].title.lower() == e.lower() for e in chain[:-1]):
            break
    else:  # pragma: no cover - the KB is dense enough that this never happens in practice
        raise RuntimeError(f"could not sample a {horizon}-hop chain from KB {kb_seed}")
    return Task(
        id=task_id,
        question=_question(kb, chain, rels, rng),
        answer=chain[-1],
        source="search",
        tools=list(TOOLS),
        meta={"suite": "search", "horizon": horizon, "seed": seed, "kb_seed": kb_seed,
              "chain": chain, "relations": rels,
              "solution": solution_steps(chain, rels, [kb.fact_sentence(chain[i], r) for i, r in enumerate(rels)])},
    )
