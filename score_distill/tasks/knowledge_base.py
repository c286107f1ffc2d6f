"""A generated knowledge base of fictional entities for the multi-hop search suite.

Entities (people, cities, companies, rivers, bands) have invented names and typed relations
(founded_by, born_in, mentor, ...). Each entity is rendered as one short document: its relation
facts, a founding year, comparisons with other entities and, for entities with a similar-named
twin, a "not to be confused with" line, so that a search returns distractors and the agent must
read precisely. Everything is a pure function of the seed; :func:`get_kb` caches one KB per seed
in memory because building the BM25 index is the only costly part.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

from score_distill.tasks.names import NameBank, twin_of
from score_distill.tasks.search_backends import BM25Search, Doc

TYPES = ("person", "city", "company", "river", "band")


@dataclass(frozen=True)
class Relation:
    name: str
    subj: str
    obj: str
    sentences: tuple[str, ...]  # "{s}" subject, "{o}" object
    noun_phrase: str  # "{x}" = the subject, for nesting inside a question
    questions: tuple[str, ...]  # outermost hop as a question
    plan: str  # "{x}" = the subject, for plans and thoughts ("find the founder of {x}")


RELATIONS: dict[str, Relation] = {r.name: r for r in [
    Relation("founded_by", "company", "person", ("{s} was founded by {o}.", "{o} founded {s}."),
             "the founder of {x}", ("Who founded {x}?", "Who is the founder of {x}?"), "the founder of {x}"),
    Relation("headquartered_in", "company", "city",
             ("{s} is headquartered in {o}.", "The head office of {s} is in {o}."),
             "the headquarters city of {x}",
             ("In which city is {x} headquartered?", "Where is the head office of {x}?"),
             "the city where {x} is headquartered"),
    Relation("born_in", "person", "city", ("{s} was born in {o}.", "{s} is a native of {o}."),
             "the birthplace of {x}", ("In which city was {x} born?", "What is the birthplace of {x}?"),
             "the birthplace of {x}"),
    Relation("mentor", "person", "person", ("{s} was mentored by {o}.", "{s} trained under {o}."),
             "the mentor of {x}", ("Who mentored {x}?", "Who was the mentor of {x}?"), "the mentor of {x}"),
    Relation("employer", "person", "company", ("{s} works for {o}.", "{s} is employed by {o}."),
             "the employer of {x}", ("Which company employs {x}?", "Who is the employer of {x}?"),
             "the employer of {x}"),
    Relation("member_of", "person", "band", ("{s} plays in {o}.", "{s} is a member of {o}."),
             "the band of {x}", ("Which band does {x} play in?", "What band is {x} a member of?"), "the band of {x}"),
    Relation("formed_in", "band", "city", ("{s} was formed in {o}.", "{s} got together in {o}."),
             "the home city of {x}", ("In which city was {x} formed?", "Where was {x} formed?"),
             "the city where {x} was formed"),
    Relation("signed_to", "band", "company", ("{s} is signed to {o}.", "{s} records for {o}."),
             "the label of {x}", ("Which company is {x} signed to?", "What label does {x} record for?"),
             "the label of {x}"),
    Relation("located_on", "city", "river", ("{s} lies on {o}.", "{s} is built on the banks of {o}."),
             "the river of {x}", ("On which river does {x} lie?", "Which river flows through {x}?"),
             "the river {x} lies on"),
    Relation("mayor", "city", "person", ("The mayor of {s} is {o}.", "{o} is the mayor of {s}."),
             "the mayor of {x}", ("Who is the mayor of {x}?", "Who serves as mayor of {x}?"), "the mayor of {x}"),
    Relation("named_after", "river", "person", ("{s} is named after {o}.", "{s} takes its name from {o}."),
             "the namesake of {x}", ("Who is {x} named after?", "After whom is {x} named?"), "the namesake of {x}"),
]}

_COMPANY_SUFFIX = ["Labs", "Industries", "Works", "Systems", "Holdings", "Dynamics"]
_BAND_SUFFIX = ["Collective", "Quartet", "Ensemble", "Orchestra", "Trio"]
_KIND_WORD = {"person": "a person", "city": "a city", "company": "a company", "river": "a river", "band": "a band"}


@dataclass
class Entity:
    name: str
    core: str  # the unique invented word in the name
    type: str
    facts: dict[str, str] = field(default_factory=dict)  # relation -> object entity name
    year: int = 0
    twin: str | None = None  # a similar-named entity of the same type


class KnowledgeBase:
    def __init__(self, seed: int, per_type: int = 40, twin_share: float = 0.3, k: int = 3):
        self.seed = seed
        rng = random.Random(f"kb/{seed}")
        bank = NameBank(rng)
        first_names = [bank.take() for _ in range(30)]  # registered so no core equals a first name
        self.entities: dict[str, Entity] = {}
        by_type: dict[str, list[str]] = {t: [] for t in TYPES}

        def make(t: str, core: str) -> Entity:
            if t == "person":
                name = f"{rng.choice(first_names)} {core}"
            elif t == "company":
                name = f"{core} {rng.choice(_COMPANY_SUFFIX)}"
            elif t == "river":
                name = f"the {core} River"
            elif t == "band":
                name = f"the {core} {rng.choice(_BAND_SUFFIX)}"
            else:
                name = core
            e = Entity(name, core, t, year=rng.randint(1820, 2015))
            self.entities[name] = e
            by_type[t].append(name)
            return e

        for t in TYPES:
            for _ in range(per_type):
                e = make(t, bank.take())
                if rng.random() < twin_share:
                    for _ in range(10):  # a free twin core is usually found at once
                        core = bank.take(twin_of(e.core, rng))
                        if core:
                            tw = make(t, core)
                            e.twin, tw.twin = tw.name, e.name
                            break
        for e in self.entities.values():
            for rel in RELATIONS.values():
                if rel.subj == e.type:
                    e.facts[rel.name] = rng.choice([n for n in by_type[rel.obj] if n != e.name])
        self.by_type = by_type
        self.docs = [self._render(e, rng) for e in self.entities.values()]
        self._pages = {d.id: d.text for d in self.docs}
        self.search = BM25Search(self.docs, k=k)
        # Word-boundary patterns on the unique core find entity mentions in free text.
        self._mention = {n: re.compile(rf"(?<!\w){re.escape(e.core)}(?!\w)", re.I) for n, e in self.entities.items()}

    def _render(self, e: Entity, rng: random.Random) -> Doc:
        sents = [rng.choice(RELATIONS[r].sentences).format(s=_cap(e.name), o=o) for r, o in e.facts.items()]
        verb = {"person": "was born", "city": "was founded", "company": "was founded", "river": "was first mapped",
                "band": "was formed"}[e.type]
        sents.append(f"{_cap(e.name)} {verb} in {e.year}.")
        other = rng.choice([n for n in self.by_type[e.type] if n != e.name])
        sents.append(f"{_cap(e.name)} is often compared with {other}.")
        rng.shuffle(sents)
        intro = f"{_cap(e.name)} is {_KIND_WORD[e.type]}."
        tail = [f"Not to be confused with {e.twin}."] if e.twin else []
        return Doc(id=e.name, title=_cap(e.name), text=" ".join([intro, *sents, *tail]))

    def fact_sentence(self, name: str, rel: str) -> str:
        """The sentence of ``name``'s own page that states its ``rel`` fact (the one a reader copies it from)."""
        obj, text = self.entities[name].facts[rel], self._pages[name]
        return next(sent for tpl in RELATIONS[rel].sentences if (sent := tpl.format(s=_cap(name), o=obj)) in text)

    def mentions(self, text: str) -> set[str]:
        """Names of the entities whose core word appears in ``text``."""
        return {n for n, pat in self._mention.items() if pat.search(text or "")}

    def sample_chain(self, rng: random.Random, hops: int) -> tuple[list[str], list[str]] | None:
        """A path of ``hops`` relations through distinct entities: (entity names e_0..e_H, relations)."""
        start = rng.choice(list(self.entities))
        chain, rels = [start], []
        for _ in range(hops):
            e = self.entities[chain[-1]]
            options = [(r, o) for r, o in e.facts.items() if o not in chain]
            if not options:
                return None
            r, o = rng.choice(sorted(options))
            chain.append(o)
            rels.append(r)
        return chain, rels


def _cap(name: str) -> str:
    return name[0].upper() + name[1:]


@lru_cache(maxsize=8)
def get_kb(seed: int) -> KnowledgeBase:
    return KnowledgeBase(seed)
