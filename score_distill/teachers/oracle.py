"""The oracle teacher: solves, reviews and corrects built-in suite tasks from their ground truth.

It stands in for a large LLM teacher wherever one cannot run (CPU, tests) and gives an exact
reference for measuring LLM teachers. It needs ``task.meta["solution"]`` (math and search suites).

``solve`` renders the solution as a trajectory (plan + actions, origin "teacher") and executes
every action in a real sandbox, so observations are real.

``locate`` - the rule for the FIRST CRITICAL ERROR. Let v_1..v_n be the solution's action values
(math: each step's exact value; search: the entity each hop reveals, then the answer). Steps are
walked in order, tracking progress p = number of values reached (the state the trajectory is in).
Progress is read only from what a step SHOWED the student (its printed observation), never from
values it computed silently or tool results it never printed: the student's next step can only
build on what it saw, and a correction written from more would name things the student never saw.

1. A trajectory whose final answer is correct -> ``is_correct``.
2. A plan step is wrong when it names something the task does not contain: math, a number of
   3+ digits that is neither in the question nor a solution value; search, a knowledge-base
   entity that is not on the question's chain, or a plan that does not name the question's entity
   (a misspelt name). Otherwise plans are accepted.
3. An action step makes PROGRESS when it shows a later value: math, a number its observation
   shows equals v_{p+1} (p advances by one), or equals a later v_k that could not match by
   chance (not a small integer, see ``_distinctive``: several operations in one step count).
   An observation that lists many numbers (more than ``_MAX_SHOWN`` beyond the question's)
   singles out none of them and shows nothing: ``print(list(range(10, 800)))`` contains 19 but
   has not computed it. Search: a ``web_search`` for the current entity e_p was made (in this or
   an earlier step) and this step's printed output shows e_{p+1}.
4. An action step is WRONG (a critical error) when, without progress, it commits to something
   false: math, the last number it showed is not a solution value, not a number of the question
   and not a value already reached (a wrong value printed, e.g. an exact result lost to floats);
   search, a query that names an entity off the chain known so far (searched the wrong entity,
   or read the wrong entity from the results) or names no entity at all (a misspelt name), or a
   non-search step whose new output names one entity, off the chain (re-printing a search result,
   which lists many entities, commits to none).
5. The step that submits the final answer, when that answer is wrong and no earlier step was
   WRONG, is the final error.
6. Otherwise the step is a STALL (exception, timeout, no code, format errors, a silent step, or
   an irrelevant step such as re-printing a known value or a query for an entity already resolved).
   Stalls the trajectory recovered from (progress came after them) are never critical.
7. The critical error is then moved back over the stalls that led to it: when the WRONG or final
   step of rule 4/5 follows, without progress in between, a step that raised or that ran silently
   (printed nothing; an import-only step excepted), that earlier step is the first critical error.
   Its state was never shown, so the later step may only have carried its damage forward (a silent
   ``b = a + 1`` and then ``print(b * 3)``); blaming the later step would keep the real error in the
   verified prefix that SFT and RL train on.
8. For an UNFINISHED trajectory without a WRONG step, the first error is the first stall; if every
   step made progress (it only ran out of steps) there is no error to name: hard to teach.

``correct`` writes the next solution step for the verified prefix (progress p, by the same rule, so
from what the prefix's observations showed): the plan if the error is the plan, else solution
action p+1 with its natural thought (a search read quotes the sentence the entity came from only
where the prefix printed that sentence; otherwise it names the entity alone); math code reads the
previous value from the variable the prefix printed it from (renamed in the solution's code), or
recomputes the chain from the question when no such variable survives. It never mentions a mistake
and never writes a literal final answer except the search answer, which the prefix's observations
showed. The oracle spends no tokens; ``usage.calls`` counts its calls. Its steps pass the same
answer-leak and correction-talk guards as any teacher's (MPS runs them on every proposal).
"""

from __future__ import annotations

import ast
import re
from fractions import Fraction

from score_distill.tasks.knowledge_base import get_kb
from score_distill.tasks.registry import tools_for
from score_distill.tasks.scoring import is_correct, score
from score_distill.tasks.search_suite import QUOTE, solution_steps
from score_distill.teachers.base import StepProposal, Verdict
from score_distill.trajectory import Step, Task, Trajectory, Usage

_NUM = re.compile(r"Fraction\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)|(?<![\w.])-?\d+(?:/\d+)?")
_QUERY = re.compile(r"web_search\(\s*(?:query\s*=\s*)?(['\"])(.*?)\1")


def _numbers(text: str) -> list[str]:
    """Exact numbers in printed text, as the solution renders them ('123', '7/3')."""
    out = []
    for m in _NUM.finditer(text or ""):
        if m.group(1) is not None:
            f = Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
            if f is not None:
                out.append(str(f))
        else:
            tok = m.group(0)
            if "/" in tok:
                a, b = tok.split("/")
                out.append(str(Fraction(int(a), int(b))) if int(b) else tok)
            else:
                out.append(str(int(tok)))
    return out


# An observation showing more numbers than this (beyond the question's own) is a listing: it singles out
# none of them. A solution step shows one value; a student may label a few ("a = 3, b = 8"); a dump of
# candidates (``print(list(range(10, 800)))``) would otherwise match any small solution value by chance.
_MAX_SHOWN = 4
# Empty output, as the sandbox (and the reference interpreter) report it.
_SILENT = {"", "none", "(no output)", "execution successful, no output."}


def _shown_numbers(observation: str, question_numbers: set[str]) -> list[str]:
    """The numbers an observation shows as results: all it printed, or none when it is a listing."""
    nums = _numbers(observation)
    if len(set(nums) - question_numbers) > _MAX_SHOWN:
        return []
    return nums


def _distinctive(value: str) -> bool:
    """A value that a step cannot show by chance: not an integer, or an integer of 3+ digits."""
    f = Fraction(value)
    return f.denominator != 1 or abs(f) >= 100


def _silent(s: Step) -> bool:
    return (s.observation or "").strip().lower() in _SILENT


def _imports_only(code: str) -> bool:
    try:
        tree = ast.parse(code or "")  # parsed only, never executed
    except SyntaxError:
        return False
    return bool(tree.body) and all(isinstance(n, ast.Import | ast.ImportFrom) for n in tree.body)


def _parses(code: str) -> bool:
    try:
        ast.parse(code or "")  # parsed only, never executed
    except SyntaxError:
        return False
    return True


def _hides_state(s: Step) -> bool:
    """A step that changed (or may have changed) the interpreter state without showing it."""
    if s.kind != "action" or not _parses(s.code):
        return False  # code that does not parse never ran: it changed nothing
    return s.error is not None or (_silent(s) and bool((s.code or "").strip()) and not _imports_only(s.code))


def _actions(task: Task) -> list[dict]:
    return [s for s in task.meta["solution"] if s["kind"] == "action"]


class _Walker:
    """Progress of a trajectory along the solution; one instance per trajectory review."""

    def __init__(self, task: Task):
        self.task = task
        self.suite = task.meta.get("suite")
        self.values = [s["value"] for s in _actions(task)]
        self.p = 0
        if self.suite == "search":
            self.kb = get_kb(int(task.meta["kb_seed"]))
            self.chain: list[str] = task.meta["chain"]
            self.searched: set[str] = set()  # entities some query named so far (results seen or not)
            self.outputs: list[str] = []  # outputs shown so far (a re-print shows nothing new)
        else:
            self.question_numbers = set(_numbers(task.question))

    # -- plans
    def plan_problem(self, plan: str) -> str | None:
        if self.suite == "math":
            bad = [n for n in _numbers(plan) if len(n.lstrip("-").split("/")[0]) >= 3
                   and n not in self.question_numbers and n not in self.values]
            return f"the plan uses {bad[0]}, a number that is not in the question" if bad else None
        named = self.kb.mentions(plan)
        off = sorted(named - set(self.chain))
        if off:
            return f"the plan is about {off[0]}, which the question does not concern"
        if self.chain[0] not in named:  # e.g. a misspelt name: the searches it plans find nothing
            return f"the plan does not name {self.chain[0]}, the entity the question asks about"
        return None

    # -- actions: returns ("progress" | "wrong" | "stall", explanation)
    def step(self, s: Step) -> tuple[str, str]:
        return self._math(s) if self.suite == "math" else self._search(s)

    def _math(self, s: Step) -> tuple[str, str]:
        nums = _numbers(s.observation)
        shown = _shown_numbers(s.observation, self.question_numbers)
        reached = [k for k in range(self.p, len(self.values))
                   if self.values[k] in shown and (k == self.p or _distinctive(self.values[k]))]
        if reached:
            self.p = max(reached) + 1
            return "progress", ""
        if s.error:
            return "stall", f"the code failed ({s.error})"
        if not s.code.strip():
            return "stall", "the step has no code"
        if not nums:
            return "stall", "the step printed no result"
        if not shown:
            return "stall", f"the step printed {len(set(nums))} numbers without singling out a result"
        last = shown[-1]
        if last in self.values[: self.p] or last in self.question_numbers:
            return "stall", "the step did not compute anything new"
        if last in self.values:
            return "stall", "the step printed a later quantity without the ones it depends on"
        return "wrong", f"the step produced {last}, which is not the value of the next quantity"

    def _queries(self, s: Step) -> list[tuple[str, str]]:
        calls = [(str(tc.args[0]) if tc.args else str(tc.kwargs.get("query", "")), tc.result)
                 for tc in s.tool_calls if tc.name == "web_search"]
        if calls:
            return calls
        return [(m.group(2), s.observation) for m in _QUERY.finditer(s.code or "")]

    def _advance(self, shown: set[str]) -> bool:
        """Progress by what an output showed: the next entity, once its subject has been searched."""
        moved = False
        while self.p < len(self.chain) - 1 and self.chain[self.p] in self.searched \
                and self.chain[self.p + 1] in shown:
            self.p += 1
            moved = True
        return moved

    def _search(self, s: Step) -> tuple[str, str]:
        known = set(self.chain[: self.p + 1])
        shown = self.kb.mentions(s.observation)  # what the student saw; raw tool results it never printed don't count
        queries = self._queries(s)
        progressed = False
        text = (s.observation or "").strip()
        repeat = bool(text) and text in self.outputs  # the same output again: it shows nothing new
        self.outputs.append(text)
        for q, _result in queries:
            named = self.kb.mentions(q)
            off = named - known
            if off:
                return "wrong", f"the search was for {sorted(off)[0]}, which is not the entity needed"
            if not named:  # a misspelt or invented name: nothing it returns is on the way to the answer
                return "wrong", f"the search was for {q!r}, which names no entity found so far"
            self.searched |= named
            if self._advance(shown):
                known = set(self.chain[: self.p + 1])
                progressed = True
        if not queries and not repeat and self._advance(shown):  # printing a result searched silently before
            progressed = True
        if progressed:
            return "progress", ""
        if s.error:
            return "stall", f"the code failed ({s.error})"
        if not queries:
            if not s.code.strip():
                return "stall", "the step has no code"
            claimed = shown - known
            # A claim names one entity; a re-printed search result lists many (its distractors included)
            # and commits to none of them.
            if len(claimed) == 1 and not repeat:
                return "wrong", f"the step took {next(iter(claimed))} as the entity found, which is not right"
        return "stall", "the step did not find the next entity"


class OracleTeacher:
    name = "oracle"

    def __init__(self, sandbox_pool=None):
        self.usage = Usage()
        self._pool = sandbox_pool
        self._own_pool = False

    def _get_pool(self):
        if self._pool is None:
            from score_distill.sandbox import SandboxConfig, SandboxPool  # only solve() needs it

            self._pool, self._own_pool = SandboxPool(SandboxConfig()), True
        return self._pool

    def close(self) -> None:
        if self._own_pool and self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- solve
    def solve(self, tasks: list[Task]) -> list[Trajectory]:
        for t in tasks:
            if "solution" not in t.meta:
                raise ValueError(f"task {t.id}: the oracle needs meta['solution'] (built-in suites only)")
        pool = self._get_pool()
        self.usage.add(Usage(calls=len(tasks)))
        trajs = [Trajectory(task=t, policy=self.name,
                            steps=[Step(kind="plan", thought=t.meta["solution"][0]["thought"], origin="teacher")])
                 for t in tasks]
        boxes = [pool.new(tools=tools_for(t)) for t in tasks]
        try:
            n_max = max((len(_actions(t)) for t in tasks), default=0)
            for a in range(n_max):
                live = [i for i, t in enumerate(tasks) if a < len(_actions(t)) and trajs[i].final_answer is None]
                if not live:
                    break
                sols = [_actions(tasks[i])[a] for i in live]
                results = pool.run_batch([(boxes[i], s["code"], None) for i, s in zip(live, sols)])
                for i, s, r in zip(live, sols, results):
                    step = Step(kind="action", thought=s["thought"], code=s["code"], observation=r.observation,
                                origin="teacher", error=r.error, tool_calls=list(r.tool_calls),
                                final_answer=r.final_answer, exec_seconds=r.seconds)
                    trajs[i].steps.append(step)
                    if r.final_answer is not None:
                        trajs[i].final_answer = r.final_answer
        finally:
            for b in boxes:
                b.close()
        for tr in trajs:
            tr.score = score(tr.task, tr.final_answer)
            tr.outcome = ("correct" if is_correct(tr.task, tr.final_answer) else "wrong") \
                if tr.final_answer is not None else "unfinished"
        return trajs

    # -- locate
    def locate(self, trajectories: list[Trajectory]) -> list[Verdict]:
        self.usage.add(Usage(calls=len(trajectories)))
        return [self._locate_one(t) for t in trajectories]

    def _locate_one(self, tr: Trajectory) -> Verdict:
        task = tr.task
        if "solution" not in task.meta:
            return Verdict(False, failure=f"task {task.id} has no meta['solution']; the oracle cannot review it")
        final = tr.final_answer
        if final is None:
            final = next((s.final_answer for s in tr.steps if s.final_answer is not None), None)
        if final is not None and is_correct(task, final):
            return Verdict(True, analysis="the final answer is correct")
        w = _Walker(task)
        first_stall: tuple[int, str] | None = None
        hidden: tuple[int, str, int] | None = None  # first state-hiding stall since the last progress
        for i, s in enumerate(tr.steps):
            if s.kind == "plan":
                why = w.plan_problem(s.thought)
                if why:
                    return Verdict(False, i, analysis=why, suggestion=_suggest(task, w.p, plan=True))
                continue
            before = w.p
            status, why = w.step(s)
            blame_here = status == "wrong" or s.final_answer is not None
            if blame_here and status != "progress" and hidden is not None:
                j, why_j, p_j = hidden  # rule 7: the unrecovered silent or failing step before it
                return Verdict(False, j, analysis=f"{why_j}; the run never recovered from it",
                               suggestion=_suggest(task, p_j))
            if s.final_answer is not None:
                if status == "wrong":
                    return Verdict(False, i, analysis=why, suggestion=_suggest(task, before))
                return Verdict(False, i, analysis=f"the submitted answer {s.final_answer!r} is not correct",
                               suggestion=_suggest(task, w.p))
            if status == "wrong":
                return Verdict(False, i, analysis=why, suggestion=_suggest(task, before))
            if status == "progress":
                hidden = None
            elif hidden is None and _hides_state(s):
                hidden = (i, why if not _silent(s) or s.error else "the step ran without showing its result", before)
            if status == "stall" and first_stall is None:
                first_stall = (i, why)
        if final is not None:  # a final answer recorded without a step that produced it
            return Verdict(False, len(tr.steps) - 1 if tr.steps else None, analysis="the final answer is wrong")
        if first_stall is not None:
            i, why = first_stall
            return Verdict(False, i, analysis=why + "; the task was not finished",
                           suggestion=_suggest(task, _progress_before(task, tr.steps, i)))
        return Verdict(False, None, analysis="every step made progress but the task was not finished")

    # -- correct
    def correct(self, trajectories: list[Trajectory], verdicts: list[Verdict]) -> list[StepProposal]:
        self.usage.add(Usage(calls=len(trajectories)))
        out = []
        for tr, v in zip(trajectories, verdicts, strict=True):
            k = v.first_error_step
            if v.is_correct or k is None or "solution" not in tr.task.meta:
                out.append(StepProposal(None, failure="no located error to correct"))
                continue
            if not 0 <= k < len(tr.steps):
                out.append(StepProposal(None, failure=f"step index {k} out of range (0..{len(tr.steps) - 1})"))
                continue
            out.append(StepProposal(self._next_step(tr.task, tr.steps[:k], replace_plan=tr.steps[k].kind == "plan")))
        return out

    def _next_step(self, task: Task, prefix: list[Step], replace_plan: bool) -> Step:
        sol = task.meta["solution"]
        if replace_plan or not prefix:
            return Step(kind="plan", thought=sol[0]["thought"], origin="teacher")
        acts = _actions(task)
        p = _progress_before(task, prefix, len(prefix))
        p = min(p, len(acts) - 1)
        s = acts[p]
        if task.meta.get("suite") == "math":
            return Step(kind="action", thought=s["thought"], code=_math_code(task, prefix, p), origin="teacher")
        code = s["code"]
        thought = s["thought"]
        quote = QUOTE.match(thought)
        if quote and not any(quote.group(1) in (st.observation or "") for st in prefix):
            # The prefix reached this entity without printing the sentence the solution quotes (another
            # page named it): say the same without a quote, so the step cites nothing the student never saw.
            thought = solution_steps(task.meta["chain"], task.meta["relations"])[1 + p]["thought"]
        if s.get("var"):  # a fresh results variable, never clobbering one the prefix uses
            n_prev = sum(1 for st in prefix if st.kind == "action")
            code = re.sub(rf"\b{s['var']}\b", f"results_{n_prev + 1}", code)
        return Step(kind="action", thought=thought, code=code, origin="teacher")


def verified_progress(tr: Trajectory) -> float | None:
    """Share of the solution's key steps the trajectory got right before its first critical error
    (1.0 when the final answer is correct); None for a task without a ground-truth solution.

    Success is all-or-nothing, so a weak student that gets 2 of 4 dependent steps right scores the
    same 0 as one that gets none; this measures how far along the chain it gets, by the same rule
    MPS uses to find the first error (an error found by the rule cuts the count there)."""
    task = tr.task
    if "solution" not in task.meta:
        return None
    n = len(_actions(task))
    if n == 0:
        return None
    v = OracleTeacher()._locate_one(tr)
    if v.is_correct:
        return 1.0
    upto = len(tr.steps) if v.first_error_step is None else v.first_error_step
    return min(_progress_before(task, tr.steps, upto), n) / n


def _progress_before(task: Task, steps: list[Step], upto: int) -> int:
    w = _Walker(task)
    for s in steps[:upto]:
        if s.kind == "action":
            w.step(s)
    return w.p


def _suggest(task: Task, p: int, plan: bool = False) -> str:
    if plan:
        return task.meta["solution"][0]["thought"]
    acts = _actions(task)
    return acts[min(p, len(acts) - 1)]["thought"]


def _printed_name(code: str) -> str | None:
    """The variable the step's last print() shows, e.g. ``x`` in ``print("B =", x)``."""
    try:
        tree = ast.parse(code)  # parsed only, never executed
    except SyntaxError:
        return None
    name = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            names = [a.id for a in node.args if isinstance(a, ast.Name)]
            if names:
                name = names[-1]
    return name


def _assigned(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _math_code(task: Task, prefix: list[Step], p: int) -> str:
    acts = _actions(task)
    s = acts[p]
    if p == 0:
        return s["code"]
    want = acts[p - 1]["value"]
    # The prefix step that printed the previous value, and the variable it printed it from.
    for j in range(len(prefix) - 1, -1, -1):
        st = prefix[j]
        if st.kind == "action" and want in _shown_numbers(st.observation, set(_numbers(task.question))):
            var = _printed_name(st.code)
            later = set().union(*[_assigned(x.code) for x in prefix[j + 1:]]) if prefix[j + 1:] else set()
            if var and var not in later:
                return re.sub(rf"\b{acts[p - 1]['var']}\b", var, s["code"])
            break
    # No variable holds it any more: recompute the chain from the question, printing only the new value.
    lines = []
    for a in acts[:p]:
        lines += [ln for ln in a["code"].splitlines() if not ln.startswith(("print(", "final_answer_print("))]
    return "\n".join(lines + [s["code"]])
