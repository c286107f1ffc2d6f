"""The batched agent loop: many episodes at once, each continuing from exactly what its model produced.

Two drivers behind one call, :func:`run_episodes`:

* a policy with an in-process engine (``TransformersPolicy``) runs on the
  :class:`~score_distill.engine.RolloutEngine`: every episode keeps its KV cache across turns, a turn
  appends only the observation's ids, and an episode whose turn ends is executed and continues (or
  leaves, letting a waiting one in) without waiting for the others. Token in, token out: each step
  records the ids of its turn as the context held them (``Step.tokens``), which RL trains on. An action
  whose code is still running after ``TOOL_WAIT_S`` leaves its row parked: the other episodes decode on
  and it continues once its observation is in, so one slow program does not stall every row;
* any other policy (an OpenAI-compatible server, a scripted test policy) gets one ``generate`` call
  per round for all live episodes, the chats built from the turns as the model wrote them.

Either way the actions run in the sandbox pool concurrently, and episodes are admitted
continuously up to ``max_live_episodes`` so a thousand tasks never means a thousand interpreters.
An episode may start from a prefix (MPS continuation, RL rollouts): the prefix's code is replayed
first, serving recorded tool results, so the interpreter holds what the prefix left.

Sampling is seeded per episode (``EpisodeStart.seed``, else derived from the sampling seed and the
episode's id) on the engine, so an episode's tokens do not depend on which others share the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from score_distill.agent import format as fmt
from score_distill.models.base import Completion, Policy, SamplingParams
from score_distill.sandbox.pool import PoolFull
from score_distill.trajectory import Origin, Step, Task, Trajectory, TurnTokens, steps_to_messages
from score_distill.utils.progress import progress_bar
from score_distill.utils.seeds import derive_seed

ToolsFor = Callable[[Task], dict[str, Callable[..., str]]]
Scorer = Callable[[Task, str | None], float]

NO_CODE_OBSERVATION = (
    "Error: no code found. Reply with <thought>...</thought> and then <code>...</code>, "
    "and call final_answer_print(answer) when you know the answer."
)


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(8, ge=1, description="Steps per episode, the plan included (reference: 8).")
    max_new_tokens: int = Field(512, ge=1, description="Token limit for one step.")
    max_episode_tokens: int | None = Field(None, description="Generated-token budget for a whole episode.")
    max_live_episodes: int = Field(64, ge=1, description="Episodes (and interpreters) alive at once.")
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    correct_threshold: float = Field(1.0, description="Score at or above which an answer counts as correct.")
    system_prompt: str | None = Field(
        None, description="Override the CodeAct system prompt (None: built from the task's tools)."
    )


@dataclass
class EpisodeStart:
    task: Task
    prefix: list[Step] = field(default_factory=list)
    # True when the prefix's last step is new (a teacher's correction) and must be executed for
    # real rather than replayed: its observation is recorded into the step.
    execute_last: bool = False
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # this episode's sampling seed (engine); None: derived from the sampling seed and id


class EpisodeFeed(Protocol):
    """More episodes that become known while others run (MPS: a task's continuation after its correction).

    ``poll(block)`` returns the starts ready now ([] when none is ready yet); with ``block`` (no episode is live,
    so none can finish meanwhile) it waits until some are ready, or returns None: no more will come."""

    def poll(self, block: bool) -> list[EpisodeStart] | None: ...


@dataclass
class _Live:
    start: EpisodeStart
    steps: list[Step]
    sandbox: Any
    tokens: int = 0
    done: bool = False
    failure: str | None = None
    prompt_ids: list[int] | None = None


def _default_tools_for(task: Task) -> dict[str, Callable[..., str]]:
    from score_distill.tasks.registry import tools_for

    return tools_for(task)


def _default_scorer(task: Task, answer: str | None) -> float:
    from score_distill.tasks.scoring import score

    return score(task, answer)


def finish_trajectory(
    task: Task,
    steps: list[Step],
    scorer: Scorer,
    *,
    policy: str = "",
    traj_id: str | None = None,
    correct_threshold: float = 1.0,
    failure: str | None = None,
    meta: dict[str, Any] | None = None,
    prompt_ids: list[int] | None = None,
) -> Trajectory:
    """Build the scored trajectory record from steps (the first final answer ends it)."""
    final = next((s.final_answer for s in steps if s.final_answer is not None), None)
    kwargs: dict[str, Any] = {"id": traj_id} if traj_id else {}
    t = Trajectory(task=task, steps=steps, final_answer=final, policy=policy, meta=dict(meta or {}),
                   prompt_ids=prompt_ids, **kwargs)
    if failure:
        t.outcome = "error"
        t.meta["failure"] = failure
    elif final is None:
        t.outcome = "unfinished"
    else:
        t.score = float(scorer(task, final))
        t.outcome = "correct" if t.score >= correct_threshold else "wrong"
    return t


def step_from_completion(c: Completion, *, is_first: bool, origin: Origin) -> Step:
    parsed = fmt.parse_step(c.text, is_first=is_first)
    rendered = fmt.render_plan(parsed.thought) if is_first else fmt.render_action(parsed.thought, parsed.code)
    return Step(
        kind=parsed.kind,
        thought=parsed.thought,
        code=parsed.code,
        origin=origin,
        raw=None if rendered.strip() == c.text.strip() else c.text,
        prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens,
        gen_seconds=c.seconds,
        format_errors=list(parsed.format_errors),
    )


def apply_exec_result(step: Step, result: Any) -> Step:
    """Copy a sandbox ExecResult into the step."""
    step.observation = result.observation
    step.final_answer = result.final_answer
    step.error = result.error
    step.exec_seconds = result.seconds
    step.tool_calls = list(result.tool_calls)
    return step


def _runnable(st: Step) -> bool:
    """An action with code; plans need no run, and a code-less action gets ``NO_CODE_OBSERVATION``."""
    if st.kind == "action" and not st.code.strip():
        st.observation = NO_CODE_OBSERVATION
    return st.kind == "action" and bool(st.code.strip())


def execute_steps(pool: Any, jobs: list[tuple[Any, Step]]) -> None:
    """Run each action step's code in its sandbox (concurrently); plans and code-less steps need no run."""
    runnable = [(sb, st) for sb, st in jobs if _runnable(st)]
    if not runnable:
        return
    results = pool.run_batch([(sb, st.code, None) for sb, st in runnable])
    for (_, st), r in zip(runnable, results):
        apply_exec_result(st, r)


# How long the engine's rows wait for the code of the turns that ended together before the unfinished ones are
# parked. Most cells take milliseconds: answering them at once saves their rows a step; a cell that loops to the
# sandbox's time limit no longer holds every row for it (docs/figures/perf/sandbox_stalls.json, parked_rows.json).
TOOL_WAIT_S = 0.05
_POLL_WAIT_S = 0.1  # every row parked: how long one blocking poll waits before the engine looks for new episodes


def _admit(pool: Any, st: EpisodeStart, tools_for: ToolsFor, max_steps: int,
           block: bool = True) -> tuple[_Live, bool]:
    """A fresh sandbox holding what the prefix left; True when the prefix already ends the episode.

    ``block=False`` (episodes are live): raises ``PoolFull`` when the pool cannot start one now, e.g. the host
    refused an interpreter below the pool's cap; waiting in ``new()`` would wait on this very thread."""
    sb = pool.new(tools=tools_for(st.task), block=block)
    steps = [s.model_copy(deep=True) for s in st.prefix]
    ep = _Live(st, steps, sb)
    replayed = steps[:-1] if st.execute_last else steps
    if any(s.kind == "action" and s.code.strip() for s in replayed):
        sb.replay(replayed)
    if st.execute_last and steps:
        execute_steps(pool, [(sb, steps[-1])])
    return ep, any(s.final_answer is not None for s in steps) or len(steps) >= max_steps


def _pool_has_room(pool: Any) -> bool:
    """Whether a new sandbox starts now; admitting one that would wait, from this one thread, would wait forever."""
    return getattr(pool, "has_room", lambda: True)()


def _episode_over(ep: _Live, cfg: AgentConfig) -> bool:
    over_budget = cfg.max_episode_tokens is not None and ep.tokens >= cfg.max_episode_tokens
    return ep.done or ep.steps[-1].final_answer is not None or len(ep.steps) >= cfg.max_steps or over_budget


def _turn_limit(ep: _Live, cfg: AgentConfig) -> int:
    if cfg.max_episode_tokens is None:
        return cfg.max_new_tokens
    return max(1, min(cfg.max_new_tokens, cfg.max_episode_tokens - ep.tokens))


def run_episodes(
    policy: Policy,
    starts: Iterable[EpisodeStart],
    pool: Any,
    config: AgentConfig | None = None,
    *,
    tools_for: ToolsFor | None = None,
    scorer: Scorer | None = None,
    origin: Origin = "student",
    on_done: Callable[[Trajectory], None] | None = None,
    progress: str | None = "episodes",
    feed: EpisodeFeed | None = None,
) -> list[Trajectory]:
    """Run every episode to a final answer, the step limit or the token budget. Results in input order (the
    ``feed``'s episodes after ``starts``, in the order it gave them; ``on_done`` sees each as it ends)."""
    cfg = config or AgentConfig()
    tools_for = tools_for or _default_tools_for
    scorer = scorer or _default_scorer
    queue = list(starts)
    results: list[Trajectory | None] = [None] * len(queue)

    def more(block: bool) -> bool | None:
        """Append the feed's ready starts to the queue: True if some came, False if none yet, None if none will."""
        new = feed.poll(block) if feed is not None else None
        if new is None:
            return None
        queue.extend(new)
        results.extend([None] * len(new))
        return bool(new)
    stop = sorted(set(cfg.sampling.stop) | set(fmt.STOP_STRINGS) | set(fmt.PLAN_STOP_STRINGS))

    with progress_bar(len(queue), progress) as bar:

        def finish(i: int, ep: _Live) -> None:
            ep.sandbox.close()
            t = finish_trajectory(
                ep.start.task,
                ep.steps,
                scorer,
                policy=getattr(policy, "name", ""),
                traj_id=ep.start.id,
                correct_threshold=cfg.correct_threshold,
                failure=ep.failure,
                meta=ep.start.meta,
                prompt_ids=ep.prompt_ids,
            )
            results[i] = t
            if on_done is not None:
                on_done(t)
            bar.advance()

        engine_for = getattr(policy, "rollout_engine", None)
        # No more rows than episodes: the engine's cache holds every row's keys/values at the longest row's
        # length, so an MPS chunk of 12 episodes needs 12 rows, not the policy's 32. (A feed's episodes take the
        # rows those of ``starts`` leave: MPS continues each task of ``starts`` once it has ended.)
        rows = max(1, min(cfg.max_live_episodes, getattr(policy, "batch_size", cfg.max_live_episodes), len(queue)))
        engine = engine_for(cfg.sampling, stop, rows) if engine_for is not None else None
        if engine is not None:
            _run_on_engine(policy, engine, queue, pool, cfg, tools_for, origin, stop, finish, more)
        else:
            _run_in_rounds(policy, queue, pool, cfg, tools_for, origin, stop, finish, more)
    return [r for r in results if r is not None]


def _run_in_rounds(policy: Policy, queue: list[EpisodeStart], pool: Any, cfg: AgentConfig, tools_for: ToolsFor,
                   origin: Origin, stop: list[str], finish: Callable[[int, _Live], None],
                   more: Callable[[bool], bool | None]) -> None:
    """One ``policy.generate`` call per round for every live episode (backends without an engine)."""
    live: dict[int, _Live] = {}
    next_idx = 0
    round_no = 0
    while True:
        if next_idx == len(queue) and (more(not live) is None and not live):
            break
        # ...and while the sandbox pool has room: beyond what the host holds, episodes queue here.
        while next_idx < len(queue) and len(live) < cfg.max_live_episodes and (not live or _pool_has_room(pool)):
            try:
                ep, over = _admit(pool, queue[next_idx], tools_for, cfg.max_steps, block=not live)
            except PoolFull:  # the host holds no more now: this episode queues until a live one ends
                break
            if over:
                finish(next_idx, ep)
            else:
                live[next_idx] = ep
            next_idx += 1
        if not live:
            continue
        order = list(live)
        chats = [steps_to_messages(live[i].start.task, live[i].steps, cfg.system_prompt, as_written=True)
                 for i in order]
        params = cfg.sampling.model_copy(
            update={
                "max_new_tokens": cfg.max_new_tokens,
                "stop": stop,
                "n": 1,
                "seed": None if cfg.sampling.seed is None else cfg.sampling.seed + round_no,
            }
        )
        t0 = time.perf_counter()
        completions = policy.generate(chats, params)
        round_no += 1
        jobs: list[tuple[Any, Step]] = []
        for i, c in zip(order, completions):
            ep = live[i]
            if c.error:
                ep.failure = f"generation failed: {c.error}"
                ep.done = True
                continue
            step = step_from_completion(c, is_first=not ep.steps, origin=origin)
            if not step.gen_seconds:
                step.gen_seconds = (time.perf_counter() - t0) / max(1, len(order))
            ep.steps.append(step)
            ep.tokens += c.completion_tokens
            jobs.append((ep.sandbox, step))
        execute_steps(pool, jobs)
        for i in order:
            ep = live[i]
            if _episode_over(ep, cfg):
                finish(i, ep)
                del live[i]


def _run_on_engine(policy: Any, engine: Any, queue: list[EpisodeStart], pool: Any, cfg: AgentConfig,
                   tools_for: ToolsFor, origin: Origin, stop: list[str], finish: Callable[[int, _Live], None],
                   more: Callable[[bool], bool | None]) -> None:
    """Every episode on the policy's rollout engine: ids in, ids out, no re-encoding (module docstring)."""
    import torch  # lazy: `score-distill --help` imports this module (AgentConfig); endpoint runs never need torch

    from score_distill.engine import LATER, WAIT, Continue, Request

    glue = policy.chat_glue()
    live: dict[int, _Live] = {}
    running: dict[int, Future] = {}  # parked episodes: the run of their last step's code
    threads = torch.get_num_threads()

    def share_cores() -> None:
        """While cells run beside the forwards, the forwards leave them a core each (at least one for the
        forwards): a runaway program and torch's threads on the same core slow both, and the threads of one op
        wait for the slowest (measured: docs/benchmarks.md). On a GPU machine these threads only feed the GPU."""
        want = max(1, threads - len(running))
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    sample = cfg.sampling.temperature > 0

    def context_of(ep: _Live) -> list[int]:
        """The prompt and the prefix's turns as ids: recorded ids where they belong to this tokenizer, else
        the turn's text tokenized; each followed by its close, observation and the next header."""
        ids = glue.prompt(steps_to_messages(ep.start.task, [], cfg.system_prompt))
        ep.prompt_ids = list(ids)
        for s in ep.steps:
            tt = s.tokens
            if tt is None or tt.space != glue.space:
                tt = TurnTokens(space=glue.space, ids=glue.encode(s.turn_text()))
            tt = tt.model_copy(update={"after": glue.after_turn(tt.ids, s.render_observation())})
            s.tokens = tt
            ids += tt.ids + tt.after
        return ids

    def requests():
        idx = -1
        while True:
            idx += 1
            while idx == len(queue):  # the queue is drained: the feed's episodes, if any
                got = more(not live)
                if got is None:
                    return
                if not got:
                    yield WAIT  # the live episodes decode on; the feed is asked again at the next step
            st = queue[idx]
            while True:
                while live and not _pool_has_room(pool):
                    yield WAIT  # beyond what the host holds, episodes queue here until a live one ends
                try:
                    ep, over = _admit(pool, st, tools_for, cfg.max_steps, block=not live)
                    break
                except PoolFull:  # the host refused one more below the cap: wait for a live one to end
                    yield WAIT
            if over:
                finish(idx, ep)
                continue
            gen = None
            if sample:
                seed = st.seed
                if seed is None and cfg.sampling.seed is not None:
                    seed = derive_seed(cfg.sampling.seed, st.id if st.id is not None else idx)
                if seed is not None:
                    gen = torch.Generator(device=engine.device).manual_seed(seed)
            live[idx] = ep
            yield Request(context_of(ep), _turn_limit(ep, cfg), gen, tag=idx)

    def answer(tag: int) -> Any:
        """The episode's next turn (its last step's observation appended), or None when it is over."""
        ep = live[tag]
        if ep.done or _episode_over(ep, cfg):
            finish(tag, ep)
            del live[tag]
            return None
        last = ep.steps[-1]
        last.tokens.after = glue.after_turn(last.tokens.ids, last.render_observation())
        return Continue(last.tokens.after, _turn_limit(ep, cfg))

    def on_turns(turns: list[Any]) -> list[Any]:
        started: dict[int, Future] = {}
        for t in turns:
            ep = live[t.tag]
            if t.finish == "context":
                ep.failure, ep.done = "generation failed: the episode fills the model's context", True
                continue
            step = _step_from_turn(engine.tokenizer, t, is_first=not ep.steps, origin=origin, space=glue.space,
                                   stop=stop)
            ep.steps.append(step)
            ep.tokens += len(t.ids)
            if _runnable(step):
                started[t.tag] = pool.submit(ep.sandbox, step.code)
        if started:
            wait(started.values(), timeout=TOOL_WAIT_S)
        answers: list[Any] = []
        for t in turns:
            f = started.get(t.tag)
            if f is not None and not f.done():
                running[t.tag] = f
                answers.append(LATER)
                continue
            if f is not None:
                apply_exec_result(live[t.tag].steps[-1], f.result())
            answers.append(answer(t.tag))
        share_cores()
        return answers

    def poll(block: bool) -> list[tuple[int, Any]]:
        if block and running:
            wait(running.values(), timeout=_POLL_WAIT_S, return_when=FIRST_COMPLETED)
        ready = []
        for tag in [tag for tag, f in running.items() if f.done()]:
            apply_exec_result(live[tag].steps[-1], running.pop(tag).result())
            ready.append((tag, answer(tag)))
        share_cores()
        return ready

    try:
        engine.run(requests(), on_turns, poll)
    finally:
        torch.set_num_threads(threads)


def _step_from_turn(tokenizer: Any, t: Any, *, is_first: bool, origin: Origin, space: str, stop: list[str]) -> Step:
    from score_distill.models.hf import cut_at_stop

    body = t.ids[:-1] if t.finish == "eos" else t.ids
    text, hit = cut_at_stop(tokenizer.decode(body, skip_special_tokens=True), stop)
    c = Completion(text=text, prompt_tokens=len(t.context), completion_tokens=len(t.ids),
                   finish_reason="length" if t.finish == "length" else "stop", seconds=t.seconds,
                   token_ids=list(t.ids))
    step = step_from_completion(c, is_first=is_first, origin=origin)
    step.tokens = TurnTokens(space=space, ids=list(t.ids), sampled=True, logprobs=list(t.logprobs))
    return step
