"""The in-process rollout engine: every live episode keeps its KV cache across turns.

An episode (a *request*) joins with its context ids, which are prefilled once; then its turn is
decoded one token per step, batched with every other live episode. When its turn ends (end of turn
token, a stop string, or the token limit) the caller gets the sampled ids and answers with the ids
to append (the observation and the chat template's glue: prefilled, nothing re-encoded) or with
``None`` to end the episode, whose row is then given to the next waiting request at once
(continuous batching: nobody waits for the batch). A request whose leading ids equal those of a
live row (the G rollouts of one RL item, the system prompt and question every episode shares)
copies that row's cache for the common prefix instead of computing it again, and such rows (a *family*)
attend to one copy of it at each decode step (:mod:`score_distill.engine.cascade`). Ids appended while
other rows are decoding are fed in the same forward as those rows' next tokens (a *mixed* step), so the
weights are read once for both. A caller whose answer to a turn is not ready (its tools still run) answers
:data:`LATER`: that row is *parked* (it samples nothing; the others decode on) until ``poll`` gives the answer,
so one slow program no longer stalls every row.

It decodes with the model object it is given: a trainer's in-place updates are seen at the next
step, with no weight sync.

Why not transformers' continuous batching (``generate_batch`` / ``ContinuousBatchingManager``,
transformers 5.x): it runs on CPU, but (1) a request ends when it stops generating, and a follow-up
turn is a new request whose prompt is prefilled again (its prefix sharing reuses only complete
blocks still in the cache); (2) it samples with one global ``torch.multinomial`` for the batch, so
an episode's tokens depend on which others share the batch (no per-request generator); (3) it has
no stop strings; (4) its manager runs a background thread sized for a GPU workload (two 8-token
prompts of the tiny test model took about a minute on this 2-core machine, mostly set-up).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StopStringCriteria

from score_distill.engine import cascade
from score_distill.engine.kv import SlotCache
from score_distill.engine.sampling import Sampler
from score_distill.models.base import SamplingParams
from score_distill.utils.malloc import release_free_memory

SUPPORTED_ATTENTION = ("sdpa", "eager")
_MIN_FORK = 16  # ids a pending row must share beyond the best prefilled donor to be prefilled first
_MIN_FAMILY = 32  # a fork shorter than this starts no family: it would shrink the family's shared prefix
_MAX_PARTS = 8  # attention calls beyond the per-row one in a cascaded decode step (families and lone rows)


@dataclass
class Request:
    """An episode to run: ``ids`` is its whole context so far; ``max_new_tokens`` limits its first turn."""

    ids: list[int]
    max_new_tokens: int
    generator: torch.Generator | None = None
    tag: Any = None


@dataclass
class Turn:
    """One finished turn. ``context`` is the ids the turn was generated from (ending with what was appended)."""

    tag: Any
    ids: list[int]
    logprobs: list[float]
    finish: str  # "eos" | "stop" (a stop string) | "length" | "context" (no room left in the model's context)
    context: list[int]
    seconds: float


@dataclass
class Continue:
    """The caller's answer to a turn: append ``ids`` (never empty) and decode the next turn."""

    ids: list[int]
    max_new_tokens: int


@dataclass
class _Row:
    tag: Any
    ctx: list[int]  # ids whose keys/values are in the cache
    pending: list[int]  # ids to feed next (the last sampled token, plus what the caller appended)
    limit: int
    generator: torch.Generator | None
    gen: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turn_start: int = 0  # len(ctx) + len(pending) when the turn began: the turn's context length
    family: int | None = None  # rows of one family hold bitwise-identical keys/values for its prefix
    t0: float = 0.0
    ended: str | None = None
    ngrams: dict = field(default_factory=dict)  # prompt lookup: n ids -> start of the ids after their last occurrence
    indexed: int = 0  # ids of ctx + pending already in ``ngrams``
    parked: bool = False  # its turn ended and the caller's answer is not ready: it rides along, sampling nothing


def engine_supported(model: Any) -> bool:
    """Full attention through ``sdpa``/``eager``: the engine's masks are full causal masks, so a model with
    sliding-window layers is left to ``generate``."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(model.config, "_attn_implementation", None) not in SUPPORTED_ATTENTION:
        return False
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types is not None and any(t != "full_attention" for t in layer_types):
        return False
    return not (getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True))


def _lcp(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


# Yielded by a request iterator that has more requests but cannot start one now (e.g. the sandbox pool is
# at its cap): the engine goes on with the rows it has and asks again after the next turns end.
WAIT = object()
# Answered by ``on_turns`` for a turn whose answer is not ready (its tools still run): the row is parked and
# the answer comes later from ``poll``.
LATER = object()


class RolloutEngine:
    def __init__(self, model: Any, tokenizer: Any, params: SamplingParams, *, max_rows: int,
                 eos_ids: list[int], stop: list[str] | None = None, shared_attention: bool = True,
                 mixed_steps: bool = True, draft_tokens: int = 0, draft_ngram: int = 3):
        if not engine_supported(model):
            raise ValueError(f"the engine needs attention {SUPPORTED_ATTENTION}, the model uses "
                             f"{model.config._attn_implementation!r}")
        self.model, self.tokenizer, self.params = model, tokenizer, params
        self.max_rows = max_rows
        self.eos = set(eos_ids)
        self.stop = StopStringCriteria(tokenizer, list(stop)) if stop else None
        self.window = self.stop.maximum_token_len if self.stop is not None else 0
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 1 << 30))
        self.eager = model.config._attn_implementation == "eager"
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model passes kwargs on
        params_of_forward = inspect.signature(base.forward).parameters
        self.cache_kw = "cache" if "cache" in params_of_forward else "past_key_values"
        self.device = next(model.parameters()).device
        self.n_layers = cfg.num_hidden_layers
        self.vocab = model.get_output_embeddings().weight.shape[0]
        self.rows: list[_Row] = []
        self.shared_attention = shared_attention and cascade.supported(model)
        self.mixed_steps = mixed_steps and cascade.supported(model)  # its attention is cascade's function
        self.families: dict[int, int] = {}  # family -> length of the prefix its rows share
        if draft_tokens < 0 or draft_ngram < 1:
            raise ValueError(f"draft_tokens must be >= 0 and draft_ngram >= 1, got {draft_tokens}, {draft_ngram}")
        self.draft_tokens, self.draft_ngram = draft_tokens, draft_ngram
        self.stats = {"prefill_tokens": 0, "forked_tokens": 0, "decode_steps": 0, "decoded_tokens": 0,
                      "prefill_forwards": 0, "prefill_rows": 0,
                      "cascaded_steps": 0, "shared_prefix_reads_saved": 0,
                      "mixed_steps": 0, "mixed_rows_fed": 0,
                      "verify_steps": 0, "drafted_tokens": 0, "accepted_tokens": 0,
                      "parked_turns": 0, "parked_row_steps": 0,
                      # where the time goes (seconds): forwards by kind, choosing tokens, growing the cache,
                      # the caller's turns and polls (running their tools, waiting with every row parked)
                      "prefill_s": 0.0, "decode_s": 0.0, "mixed_s": 0.0, "sample_s": 0.0, "grow_s": 0.0,
                      "turns_s": 0.0}

    # -- public ---------------------------------------------------------------------------------
    def run(self, requests: Iterable[Request], on_turns: Callable[[list[Turn]], list[Any]],
            poll: Callable[[bool], list[tuple[Any, Continue | None]]] | None = None) -> None:
        """Run every request to its end. ``on_turns`` gets the turns that ended together (in row order)
        and returns, for each, a :class:`Continue`, None (the episode is over) or :data:`LATER` (not ready:
        the row is parked). ``poll(block)`` returns the ``(tag, answer)`` of parked turns whose answers are
        ready; it is asked without blocking before each step while rows are parked, and with ``block`` when
        every row is parked (it may then wait a little and return nothing: the engine asks again)."""
        it = iter(requests)
        self.poll = poll
        self.cache = SlotCache(self.n_layers, self.max_rows)
        self.sampler = Sampler(self.params, self.max_rows, self.vocab, self.device)
        self.rows, self.families = [], {}
        model = self.model
        was_training = model.training
        model.eval()  # dropout off: generation must not depend on the trainer's mode
        exhausted = False
        try:
            hooked = self.shared_attention or self.mixed_steps
            with torch.inference_mode(), (cascade.enabled(model) if hooked else nullcontext()):
                while True:
                    while not exhausted and len(self.rows) < self.max_rows:
                        req = next(it, None)
                        if req is None:
                            exhausted = True
                        elif req is WAIT:  # the caller has none to give until a live episode ends
                            break
                        else:
                            self._admit(req)
                    if any(r.parked for r in self.rows):
                        self._resume(block=False)
                    # Rows to feed ride along with the decoding rows' next step; alone, they get their own forward.
                    mix = self.mixed_steps and any(self._decoding(r) for r in self.rows)
                    if not mix:
                        self._prefill_pending()
                    if any(r.ended is not None for r in self.rows):
                        self._end_turns(on_turns)
                        continue
                    if not self.rows:
                        if exhausted:
                            break
                        continue
                    if not any(self._decoding(r) or self._unfed(r) for r in self.rows):  # all wait for tools
                        self._resume(block=True)
                        continue
                    if mix and any(self._unfed(r) for r in self.rows):
                        self._mixed()
                    else:
                        drafts = self._drafts() if self.draft_tokens else None
                        if drafts is not None and any(drafts):
                            self._verify(drafts)
                        else:
                            self._decode()
                    if any(r.ended is not None for r in self.rows):
                        self._end_turns(on_turns)
        finally:
            self.stats["grow_s"] += self.cache.grow_seconds
            self.cache = None  # free the keys/values
            # ... and hand them back: after a trainer tuned the allocator (utils/malloc.py) a freed cache stays
            # resident, and the next run's cache (another MPS chunk, the next RL update) grows beside it.
            release_free_memory()
            if was_training:
                model.train()

    # -- rows -----------------------------------------------------------------------------------
    def _admit(self, req: Request) -> None:
        if not req.ids:
            raise ValueError("a request needs at least one context id")
        slot = len(self.rows)
        best, donor = self._donor(req.ids)
        # A row still waiting for its prefill that shares more (the G rollouts of one item, joining together)
        # is prefilled first, so this one copies it instead of computing the same prefix again.
        if any(_lcp(r.ctx + r.pending, req.ids) > best + _MIN_FORK for r in self.rows if self._unfed(r)):
            self._prefill_pending()
            best, donor = self._donor(req.ids)
        shared = min(best, len(req.ids) - 1)  # at least one id is fed, for the next-token logits
        if shared > 0:
            self.cache.prepare(slice(0, 0), shared)  # capacity for the copy
            self.cache.copy_row(donor, slot, shared)
            self.stats["forked_tokens"] += shared
        row = _Row(req.tag, list(req.ids[:shared]), list(req.ids[shared:]), req.max_new_tokens, req.generator)
        if shared >= _MIN_FAMILY:
            d = self.rows[donor]
            if d.family is None:
                d.family = len(self.families)
                self.families[d.family] = shared
            self.families[d.family] = min(self.families[d.family], shared)
            row.family = d.family
        self.rows.append(row)
        self.sampler.reset_row(slot, req.ids)
        self._start_turn(slot)

    def _donor(self, ids: list[int]) -> tuple[int, int]:
        best, donor = 0, -1
        for i, r in enumerate(self.rows):
            n = _lcp(r.ctx, ids)
            if n > best:
                best, donor = n, i
        return best, donor

    def _start_turn(self, i: int) -> None:
        row = self.rows[i]
        row.gen, row.logprobs, row.ended = [], [], None
        row.turn_start = len(row.ctx) + len(row.pending)
        row.t0 = time.perf_counter()
        row.limit = min(row.limit, self.max_positions - row.turn_start)
        if row.limit < 1:
            row.ended = "context"

    def _end_turns(self, on_turns: Callable[[list[Turn]], list[Continue | None]]) -> None:
        idx = [i for i, r in enumerate(self.rows) if r.ended is not None]
        turns = []
        now = time.perf_counter()
        for i in idx:
            r = self.rows[i]
            context = (r.ctx + r.pending)[: r.turn_start]
            turns.append(Turn(r.tag, r.gen, r.logprobs, r.ended, context, now - r.t0))
        answers = on_turns(turns)
        # The caller's time (running the turns' tools): no row decodes meanwhile.
        self.stats["turns_s"] += time.perf_counter() - now
        if len(answers) != len(turns):
            raise RuntimeError(f"on_turns answered {len(answers)} of {len(turns)} turns")
        self._answer(list(zip(idx, answers)))

    def _resume(self, block: bool) -> None:
        """The answers ``poll`` has for parked rows."""
        if self.poll is None:
            raise RuntimeError("on_turns answered LATER, but run() was given no poll")
        t0 = time.perf_counter()
        got = self.poll(block)
        self.stats["turns_s"] += time.perf_counter() - t0
        answers = []
        for tag, ans in got:
            i = next((i for i, r in enumerate(self.rows) if r.parked and r.tag == tag), None)
            if i is None or ans is LATER:
                raise RuntimeError(f"poll answered {tag!r}, which is not a parked turn, or answered it LATER")
            answers.append((i, ans))
        self._answer(answers)

    def _answer(self, answers: list[tuple[int, Any]]) -> None:
        done = set()
        for i, ans in answers:
            r = self.rows[i]
            if ans is LATER:
                if self.poll is None:
                    raise RuntimeError("on_turns answered LATER, but run() was given no poll")
                r.parked, r.ended = True, None
                self.stats["parked_turns"] += 1
                continue
            r.parked = False
            if ans is None:
                done.add(i)
                continue
            if not ans.ids:
                raise ValueError("Continue.ids must not be empty")
            r.pending = r.pending + list(ans.ids)  # the turn's last sampled token, unless a parked step fed it
            r.limit = ans.max_new_tokens
            self.sampler.mark(i, ans.ids)
            self._start_turn(i)
        if done:
            self._compact(done)

    def _compact(self, done: set[int]) -> None:
        """Drop finished rows; rows from the tail move into the holes so live rows stay 0..n-1."""
        keep = len(self.rows) - len(done)
        movers = [i for i in range(keep, len(self.rows)) if i not in done]
        holes = [i for i in range(keep) if i in done]
        for hole, src in zip(holes, movers):
            self.cache.copy_row(src, hole, len(self.rows[src].ctx))
            self.sampler.move_row(src, hole)
            self.rows[hole] = self.rows[src]
        del self.rows[keep:]

    # -- forward passes -------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                 keep: torch.Tensor | None = None) -> torch.Tensor:
        if self.eager:  # eager attention adds the mask; sdpa takes booleans
            mask = self._additive(mask)
        out = self.model(input_ids=ids, position_ids=positions, attention_mask=mask, use_cache=True,
                         logits_to_keep=1 if keep is None else keep, **{self.cache_kw: self.cache})
        return out.logits[:, -1].float() if keep is None else out.logits.float()

    def _prefill_pending(self) -> None:
        """Feed every row whose turn has not sampled yet (``_unfed``): one row alone through a view of
        its cache; several together in one forward (the weights are read once, not once per row)."""
        todo = [i for i, r in enumerate(self.rows) if self._unfed(r)]
        if len(todo) == 1:
            self._prefill(todo[0])
        elif todo:
            self._prefill_rows(todo)

    @staticmethod
    def _decoding(r: _Row) -> bool:
        """A row in the middle of its turn: its last sampled token is its only pending id."""
        return r.ended is None and not r.parked and bool(r.gen)

    @staticmethod
    def _unfed(r: _Row) -> bool:
        """A row whose turn has begun but whose pending ids (a new context, or the appended ones) are not fed."""
        return r.ended is None and not r.parked and not r.gen and bool(r.pending)

    def _feed(self, r: _Row) -> list[int]:
        """What a row feeds in a step every row takes part in. A parked row feeds its turn's last token once
        (it belongs to the context whatever the answer), then a pad at its next position: written where the
        answer's first id will overwrite it, read by no other row, its logits dropped."""
        if r.parked:
            self.stats["parked_row_steps"] += 1
            return r.pending or [self.pad_id]
        return r.pending

    def _took(self, rows: list[_Row]) -> None:
        """After a step every row took part in: what each fed is in the cache."""
        for r in rows:
            r.ctx.extend(r.pending)
            r.pending = []

    def _take_unparked(self, logits: torch.Tensor) -> None:
        """Choose the next token of every row but the parked ones (``logits``: one row each, rows 0..n-1)."""
        live = [i for i, r in enumerate(self.rows) if not r.parked]
        if len(live) == len(self.rows):
            self._take(slice(0, len(live)), logits)
        elif live:
            self._take(live, logits[live])

    def _prefill_rows(self, todo: list[int]) -> None:
        rows = [self.rows[i] for i in todo]
        starts = [len(r.ctx) for r in rows]
        lens = [len(r.pending) for r in rows]
        n = max(lens)
        kv_len = max(starts) + n
        dev = self.device
        pos = torch.tensor(starts, device=dev)[:, None] + torch.arange(n, device=dev)[None, :]
        mask = (torch.arange(kv_len, device=dev)[None, None, :] <= pos[:, :, None]).unsqueeze(1)
        # Right padding: a row's pad ids are written past its own length, where nothing reads them before
        # they are overwritten; its real queries never see them (they lie after the queries' positions).
        ids = torch.tensor([r.pending + [self.pad_id] * (n - len(r.pending)) for r in rows], device=dev)
        index = torch.tensor(todo, device=dev)
        self.cache.prepare(index, kv_len, starts=starts)
        last = sorted(set(k - 1 for k in lens))
        t0 = time.perf_counter()
        logits = self._forward(ids, pos, mask, keep=torch.tensor(last, device=dev))
        self.stats["prefill_s"] += time.perf_counter() - t0
        pick = torch.tensor([last.index(k - 1) for k in lens], device=dev)
        logits = logits[torch.arange(len(rows), device=dev), pick]
        self.stats["prefill_tokens"] += sum(lens)
        self.stats["prefill_forwards"] += 1
        self.stats["prefill_rows"] += len(rows)
        for r in rows:
            r.ctx.extend(r.pending)
            r.pending = []
        self._take(todo, logits)

    def _prefill(self, i: int) -> None:
        """Feed row i's pending ids (one row: its cache is a view, nothing copied) and choose its next token."""
        row = self.rows[i]
        start, n = len(row.ctx), len(row.pending)
        pos = torch.arange(start, start + n, device=self.device)
        kv_len = start + n
        mask = (torch.arange(kv_len, device=self.device)[None, :] <= pos[:, None]).view(1, 1, n, kv_len)
        self.cache.prepare(slice(i, i + 1), kv_len, start=start)
        t0 = time.perf_counter()
        logits = self._forward(torch.tensor([row.pending], device=self.device), pos.view(1, n), mask)
        self.stats["prefill_s"] += time.perf_counter() - t0
        self.stats["prefill_tokens"] += n
        self.stats["prefill_forwards"] += 1
        self.stats["prefill_rows"] += 1
        row.ctx.extend(row.pending)
        row.pending = []
        self._take(slice(i, i + 1), logits)

    def _decode(self) -> None:
        """One token for every live row, in one batched forward over rows 0..n-1."""
        rows = self.rows
        b = len(rows)
        lens = [len(r.ctx) for r in rows]
        kv_len = max(lens) + 1
        pos = torch.tensor(lens, device=self.device)
        mask = (torch.arange(kv_len, device=self.device)[None, :] <= pos[:, None]).view(b, 1, 1, kv_len)
        self.cache.prepare(slice(0, b), kv_len, positions=pos)
        ids = torch.tensor([self._feed(r) for r in rows], device=self.device)
        plan = self._cascade_plan(lens, kv_len) if self.shared_attention else None
        cascade.set_plan(plan)
        t0 = time.perf_counter()
        try:
            logits = self._forward(ids, pos.view(b, 1), mask)
        finally:
            cascade.set_plan(None)
        self.stats["decode_s"] += time.perf_counter() - t0
        self._took(rows)
        self.stats["decode_steps"] += 1
        self.stats["decoded_tokens"] += sum(not r.parked for r in rows)
        self._take_unparked(logits)

    # -- speculative decoding by prompt lookup --------------------------------------------------
    def _drafts(self) -> list[list[int]]:
        """Each decoding row's draft: the ids that followed the latest earlier occurrence of its last n ids (n from
        ``draft_ngram`` down to 1), at most ``draft_tokens`` and no more than the turn and the context have room
        for. Why by hand: transformers' ``PromptLookupCandidateGenerator`` drafts for one ``generate`` call of a
        batch of one; here every row keeps an index of its own context, updated as ids arrive (no rescans)."""
        out = []
        for r in self.rows:
            if r.parked:
                out.append([])
                continue
            seq = r.ctx + r.pending
            n_max = self.draft_ngram
            for p in range(max(r.indexed, 1), len(seq)):
                for n in range(1, min(n_max, p) + 1):
                    r.ngrams[tuple(seq[p - n : p])] = p
            r.indexed = len(seq)
            room = min(self.draft_tokens, r.limit - len(r.gen) - 1, self.max_positions - len(seq) - 1)
            draft: list[int] = []
            if room > 0:
                for n in range(min(n_max, len(seq) - 1), 0, -1):
                    c = r.ngrams.get(tuple(seq[-n:]))
                    if c is not None:
                        draft = seq[c : c + room]
                        break
            out.append(draft)
        return out

    def _verify(self, drafts: list[list[int]]) -> None:
        """One forward of every live row's last token and its draft (T = 1 + the longest draft ids a row, shorter
        rows padded past their end, where nothing reads the pads before they are overwritten); then each row keeps
        its drafted ids while the sampler accepts them (:meth:`Sampler.choose_drafted`) and adds the token after
        the last kept one. When reading the weights bounds a step, the extra ids cost little and every kept id
        saves a whole step."""
        rows = self.rows
        b = len(rows)
        dev = self.device
        t = 1 + max(len(d) for d in drafts)
        lens = [len(r.ctx) for r in rows]
        kv_len = max(lens) + t
        pos = torch.tensor(lens, device=dev)[:, None] + torch.arange(t, device=dev)[None, :]
        ids = torch.tensor([self._feed(r) + d + [self.pad_id] * (t - 1 - len(d)) for r, d in zip(rows, drafts)],
                           device=dev)
        self.cache.prepare(slice(0, b), kv_len, positions=pos)
        hooked = self.shared_attention or self.mixed_steps
        mask = (torch.arange(kv_len, device=dev)[None, None, :] <= pos[:, :, None]).unsqueeze(1)  # [b, 1, T, kv]
        plan = None
        if hooked:
            plan = self._cascade_plan(lens, kv_len, t) if self.shared_attention else None
            if plan is None:  # every row reads its whole cache, grouped-query heads without copying keys
                dtype = self.model.dtype
                plan = cascade.CascadePlan([], 0, torch.zeros(mask.shape, dtype=dtype, device=dev).masked_fill_(
                    ~mask, torch.finfo(dtype).min))
        cascade.set_plan(plan)
        t0 = time.perf_counter()
        try:
            logits = self._forward(ids, pos, mask, keep=0)  # [b, T, vocab]
        finally:
            cascade.set_plan(None)
        self.stats["decode_s"] += time.perf_counter() - t0
        self.stats["decode_steps"] += 1
        self.stats["verify_steps"] += 1
        self.stats["drafted_tokens"] += sum(len(d) for d in drafts)
        self._took(rows)
        active = [i for i in range(b) if not rows[i].parked]
        t_start = time.perf_counter()
        for j in range(t):
            if not active:
                break
            drafted = [i for i in active if j < len(drafts[i])]
            plain = [i for i in active if j >= len(drafts[i])]
            chosen: dict[int, tuple[int, float, bool]] = {}
            if drafted:
                toks, lps, kept = self.sampler.choose_drafted(
                    logits[drafted, j], drafted, [rows[i].generator for i in drafted], [drafts[i][j] for i in drafted])
                chosen.update({i: (tok, lp, k) for i, tok, lp, k in zip(drafted, toks, lps, kept)})
            if plain:
                toks, lps = self.sampler.choose(logits[plain, j], plain, [rows[i].generator for i in plain])
                chosen.update({i: (tok, lp, False) for i, tok, lp in zip(plain, toks, lps)})
            order = sorted(chosen)
            stopped = self._stop_strings([rows[i] for i in order], [chosen[i][0] for i in order])
            active = []
            for i, hit in zip(order, stopped):
                r = rows[i]
                tok, lp, kept = chosen[i]
                self._append(r, tok, lp, hit)
                self.stats["decoded_tokens"] += 1
                if kept:
                    self.stats["accepted_tokens"] += 1
                    if r.ended is None:  # its keys are in the cache already (this forward): go on with the next
                        r.ctx.append(tok)
                        r.pending = []
                        active.append(i)
        self.stats["sample_s"] += time.perf_counter() - t_start

    def _mixed(self) -> None:
        """One forward for every live row: a decoding row's last token and a row to feed's pending ids,
        packed into one sequence (no padding), each written to its own row's cache."""
        rows = self.rows
        dev = self.device
        ids: list[int] = []
        positions: list[int] = []
        owner: list[int] = []
        last: list[int] = []
        segments: list[tuple[int, int, int, int]] = []
        for i, r in enumerate(rows):
            feed = self._feed(r)
            start, n = len(r.ctx), len(feed)
            off = len(ids)
            ids += feed
            positions += range(start, start + n)
            owner += [i] * n
            last.append(off + n - 1)
            if n > 1:
                segments.append((i, start, off, n - 1))
        lens = [len(r.ctx) + max(len(r.pending), 1) - 1 for r in rows]  # each row's last position
        kv_len = max(lens) + 1
        pos = torch.tensor(positions, device=dev)
        self.cache.prepare(slice(0, len(rows)), kv_len, packed=(torch.tensor(owner, device=dev), pos))
        span = torch.arange(kv_len, device=dev)
        decode_mask = (span[None, :] <= torch.tensor(lens, device=dev)[:, None]).view(len(rows), 1, 1, kv_len)
        segment_masks = [(span[None, : s + m] <= torch.arange(s, s + m, device=dev)[:, None]).view(1, 1, m, s + m)
                         for _, s, _, m in segments]
        if self.eager:  # eager attention adds its mask
            decode_mask, segment_masks = self._additive(decode_mask), [self._additive(m) for m in segment_masks]
        plan = self._cascade_plan(lens, kv_len) if self.shared_attention else None
        last_t = torch.tensor(last, device=dev)
        cascade.set_mixed(cascade.MixedPlan(last_t, decode_mask, plan, segments, segment_masks))
        # The 4-D mask is a placeholder the model passes on untouched; the plan holds the real ones.
        placeholder = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=dev).expand(1, 1, len(ids), kv_len)
        t0 = time.perf_counter()
        try:
            out = self.model(input_ids=torch.tensor([ids], device=dev), position_ids=pos.view(1, -1),
                             attention_mask=placeholder, use_cache=True, logits_to_keep=last_t,
                             **{self.cache_kw: self.cache})
        finally:
            cascade.set_mixed(None)
        self.stats["mixed_s"] += time.perf_counter() - t0
        fed = [r for r in rows if self._unfed(r)]
        self.stats["mixed_steps"] += 1
        self.stats["mixed_rows_fed"] += len(fed)
        self.stats["prefill_tokens"] += sum(len(r.pending) for r in fed)
        self.stats["decode_steps"] += 1
        self.stats["decoded_tokens"] += sum(self._decoding(r) for r in rows)
        self._took(rows)
        self._take_unparked(out.logits[0].float())

    def _additive(self, mask: torch.Tensor) -> torch.Tensor:
        dtype = self.model.dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)

    def _cascade_plan(self, lens: list[int], kv_len: int, t: int = 1) -> cascade.CascadePlan | None:
        """How this decode step's attention splits: each family's shared prefix read once, then every row's
        own part from the smallest prefix on. None (plain attention) without a family of two or more rows, with
        more separate parts than ``_MAX_PARTS``, or when the shared part is shorter than ``_MIN_FAMILY``."""
        members: dict[int, list[int]] = {}
        alone = []
        for i, r in enumerate(self.rows):
            (members.setdefault(r.family, []) if r.family is not None else alone).append(i)
        alone += [rows[0] for rows in members.values() if len(rows) == 1]
        groups = {f: rows for f, rows in members.items() if len(rows) > 1}
        if not groups or len(groups) + len(alone) > _MAX_PARTS:
            return None
        # A lone row's own prefix part runs up to the start; its current token stays in the per-row part.
        start = min([self.families[f] for f in groups] + [lens[i] for i in alone])
        if start < _MIN_FAMILY:
            return None
        dev = self.device
        families, prefix = [], [start] * len(lens)
        for f, rows in groups.items():
            for i in rows:
                prefix[i] = self.families[f]
            families.append((rows[0], self.families[f], torch.tensor(rows, device=dev)))
        families += [(i, start, torch.tensor([i], device=dev)) for i in alone]
        p = torch.arange(start, kv_len, device=dev)[None, None, :]
        last = torch.tensor(lens, device=dev)[:, None, None] + torch.arange(t, device=dev)[None, :, None]
        keep = (p >= torch.tensor(prefix, device=dev)[:, None, None]) & (p <= last)
        dtype = self.model.dtype
        mask = torch.zeros(keep.shape, dtype=dtype, device=dev).masked_fill_(~keep, torch.finfo(dtype).min)
        self.stats["cascaded_steps"] += 1
        self.stats["shared_prefix_reads_saved"] += sum(self.families[f] * (len(rows) - 1) for f, rows in groups.items())
        return cascade.CascadePlan(families, start, mask.view(len(lens), 1, t, -1))

    def _take(self, rows: slice | list[int], logits: torch.Tensor) -> None:
        live = self.rows[rows] if isinstance(rows, slice) else [self.rows[i] for i in rows]
        t0 = time.perf_counter()
        tokens, logprobs = self.sampler.choose(logits, rows, [r.generator for r in live])
        self.stats["sample_s"] += time.perf_counter() - t0
        stopped = self._stop_strings(live, tokens)
        for r, tok, lp, hit in zip(live, tokens, logprobs, stopped):
            self._append(r, tok, lp, hit)

    def _append(self, r: _Row, tok: int, lp: float, stop_hit: bool) -> None:
        """A chosen token joins the row's turn (and waits in ``pending`` to be fed); the turn may end with it."""
        r.gen.append(tok)
        r.logprobs.append(lp)
        r.pending = [tok]
        if tok in self.eos:
            r.ended = "eos"
        elif stop_hit:
            r.ended = "stop"
        elif len(r.gen) >= r.limit:
            r.ended = "length"

    def _stop_strings(self, live: list[_Row], tokens: list[int]) -> list[bool]:
        if self.stop is None:
            return [False] * len(live)
        w = self.window
        tails = []
        for r, tok in zip(live, tokens):
            tail = (r.ctx[-w:] + [tok])[-w:]
            tails.append([self.pad_id] * (w - len(tail)) + tail)
        return self.stop(torch.tensor(tails, device=self.device), None).tolist()
