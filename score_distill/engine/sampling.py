"""Next-token choice for a batch of engine rows, as ``model.generate`` makes it, each row with its own RNG.

The warpers are transformers' own (temperature, top-p; top-k as a selection of the k best), under ``generate``'s
conditions, so the engine samples from exactly the distribution ``generate`` does; with top-k, temperature
divides the k survivors only (dividing by a positive number keeps the order, so the same k survive). The
repetition penalty is ``RepetitionPenaltyLogitsProcessor``'s rule applied to the entries of a per-row "seen" mask
kept up to date as tokens enter the context, instead of gathering over every row's whole id list at each step
(rows have different lengths; the mask costs nothing per step).

Each row may carry its own ``torch.Generator``: a row's draws then depend only on its own seed, not
on which other episodes share the batch (a resumed evaluation samples what an uninterrupted one did).

With top-k (the default sampling settings: k = 20), a row draws among its k candidates only, from the same
distribution ``generate`` samples (``torch.multinomial`` over the k probabilities instead of over the whole
vocabulary, where all but k are zero). Why not draw as ``generate`` does: with its own generator,
``multinomial`` draws one exponential per vocabulary entry (49k for SmolLM2) serially, about 1 ms a row, which
was a tenth of the agent loop's time with 32 rows on this machine (``benchmarks/rollout_throughput.py``,
``sample_s``). The price: a seeded row draws other tokens than ``generate`` with the same seed. Without top-k
(``top_k=0``) every entry may be drawn and the rows draw exactly what ``torch.manual_seed(s);
model.generate(...)`` draws for that prompt alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from score_distill.models.base import SamplingParams


class Sampler:
    def __init__(self, params: SamplingParams, slots: int, vocab: int, device: torch.device):
        self.greedy = params.temperature <= 0
        self.penalty = float(params.repetition_penalty)
        warpers = []
        # With top-k, top-p only ever sees the k survivors (the rest are -inf, probability 0): it runs on
        # those k instead of sorting the whole vocabulary for every row at every step, and the draw is among
        # them (a tie at the k-th value, which TopKLogitsWarper keeps, is the one case where this differs).
        self.top_k = params.top_k if not self.greedy and params.top_k > 0 else 0  # <= 0: none, as in generate
        self.top_p = TopPLogitsWarper(top_p=params.top_p, min_tokens_to_keep=1) if params.top_p < 1.0 else None
        if not self.greedy:
            if params.temperature != 1.0:
                warpers.append(TemperatureLogitsWarper(params.temperature))
            if not self.top_k and self.top_p is not None:
                warpers.append(self.top_p)
        self.warpers = LogitsProcessorList(warpers)
        self.seen = torch.zeros(slots, vocab, dtype=torch.bool, device=device) if self.penalty != 1.0 else None

    # -- the "seen" mask of the repetition penalty ----------------------------------------------
    def reset_row(self, row: int, ids: list[int]) -> None:
        if self.seen is not None:
            self.seen[row].zero_()
            self.mark(row, ids)

    def mark(self, row: int, ids: list[int]) -> None:
        if self.seen is not None and ids:
            self.seen[row, torch.tensor(ids, device=self.seen.device)] = True

    def move_row(self, src: int, dst: int) -> None:
        if self.seen is not None and src != dst:
            self.seen[dst] = self.seen[src]

    # -- choosing -------------------------------------------------------------------------------
    def choose(self, logits: torch.Tensor, rows: slice | list[int], generators: list[torch.Generator | None]
               ) -> tuple[list[int], list[float]]:
        """Tokens for ``logits`` [n, vocab] (float32) of the rows ``rows``, and each token's log-probability
        under the model's unprocessed distribution (temperature 1, no top-k/top-p: what a trainer recomputes)."""
        lse, scores, idx, index = self._processed(logits, rows)
        if self.greedy:
            tokens = idx[:, 0]
        else:
            probs = torch.softmax(scores, dim=-1)
            if all(g is None for g in generators):
                tokens = torch.multinomial(probs, num_samples=1).squeeze(1)
            elif idx is not None:  # k entries a row: a loop is cheaper than the thread pool
                tokens = torch.cat([torch.multinomial(probs[i : i + 1], 1, generator=g).view(1)
                                    for i, g in enumerate(generators)])
            else:  # one draw per row from its own generator: independent of the batch
                tokens = torch.cat(_draw_rows(probs, generators))
            if idx is not None:
                tokens = idx.gather(1, tokens.view(-1, 1)).view(-1)
        return self._done(logits, lse, tokens, index)

    def choose_drafted(self, logits: torch.Tensor, rows: list[int], generators: list[torch.Generator | None],
                       drafts: list[int]) -> tuple[list[int], list[float], list[bool]]:
        """Speculative sampling against a draft id per row (prompt lookup: the draft is fixed by the context, so
        its "draft distribution" is a point mass). Greedy keeps the draft when it is the argmax. Sampling keeps
        it with the probability ``q(draft)`` that the processed distribution ``q`` gives it, else draws from
        ``q`` without it (renormalised): either way the token is distributed exactly as :meth:`choose` draws
        it. Returns the tokens, their log-probabilities and whether each row kept its draft."""
        lse, scores, idx, index = self._processed(logits, rows)
        draft = torch.tensor(drafts, device=logits.device)
        if self.greedy:
            tokens = idx[:, 0]
            return *self._done(logits, lse, tokens, index), (tokens == draft).tolist()
        probs = torch.softmax(scores, dim=-1)
        cols = idx if idx is not None else None
        hit = (cols == draft[:, None]) if cols is not None else None
        q = (probs * hit).sum(-1) if hit is not None else probs.gather(1, draft[:, None])[:, 0]
        tokens, kept = [], []
        for i, g in enumerate(generators):
            u = torch.rand(1, generator=g, device=probs.device) if g is not None else torch.rand(1, device=probs.device)
            if bool(u < q[i]):
                tokens.append(int(draft[i]))
                kept.append(True)
                continue
            rest = probs[i : i + 1].clone()
            if hit is not None:
                rest[0, hit[i]] = 0.0
            else:
                rest[0, draft[i]] = 0.0
            j = int(torch.multinomial(rest, 1, generator=g))  # multinomial renormalises
            tokens.append(int(cols[i, j]) if cols is not None else j)
            kept.append(False)
        out_tokens, out_logp = self._done(logits, lse, torch.tensor(tokens, device=logits.device), index)
        return out_tokens, out_logp, kept

    def _processed(self, logits: torch.Tensor, rows: slice | list[int]):
        """(each row's log-normaliser of the raw logits, the processed scores of the candidates, the candidates'
        columns, the rows' index into the seen mask or None). The candidates: greedy, the argmax (scores None);
        with top-k, the k best, best first; else the whole vocabulary (columns None).

        Why not transformers' processors over the whole vocabulary as they are: at every step they make about ten
        passes over [rows, vocab] (log-softmax, the penalty's two ``where``, temperature): 17-19 ms a step for 40
        rows on this machine, against 5-6 ms this way (``benchmarks/sampler_step.py``). The same arithmetic in
        fewer passes: the penalty touches only the seen entries (in place, undone after), temperature divides only
        the k survivors (division by a positive number keeps the order), and the chosen token's
        log-probability is its logit less the row's logsumexp."""
        lse = torch.logsumexp(logits, dim=-1)
        index = None
        if self.seen is not None:
            index = torch.arange(rows.start, rows.stop) if isinstance(rows, slice) else torch.tensor(rows)
            index = index.to(self.seen.device)
        if not self.greedy and not self.top_k:  # the whole vocabulary: a processed copy
            scores = logits.clone()
            if index is not None:
                self._penalise(scores, rows, index)
            return lse, self.warpers(None, scores), None, index
        undo = self._penalise(logits, rows, index) if index is not None else None
        try:
            if self.greedy:
                return lse, None, logits.argmax(dim=-1, keepdim=True), index
            scores, idx = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1)  # best first
        finally:
            if undo is not None:
                r, c, raw = undo
                logits[r, c] = raw
        scores = self.warpers(None, scores)  # temperature on the k survivors
        if self.top_p is not None:
            scores = self.top_p(None, scores)
        return lse, scores, idx, index

    def _penalise(self, scores: torch.Tensor, rows: slice | list[int], index: torch.Tensor):
        """``RepetitionPenaltyLogitsProcessor``'s rule, in place, on the entries the rows have seen; returns what
        it overwrote (rows, columns, raw values)."""
        seen = self.seen[rows] if isinstance(rows, slice) else self.seen[index]
        r, c = seen.nonzero(as_tuple=True)
        raw = scores[r, c]
        scores[r, c] = torch.where(raw < 0, raw * self.penalty, raw / self.penalty)
        return r, c, raw

    def _done(self, logits: torch.Tensor, lse: torch.Tensor, tokens: torch.Tensor, index: torch.Tensor | None
              ) -> tuple[list[int], list[float]]:
        chosen = logits.gather(1, tokens.view(-1, 1)).view(-1) - lse
        if index is not None:
            self.seen[index, tokens] = True
        return tokens.tolist(), chosen.tolist()


_pool: ThreadPoolExecutor | None = None
_pool_workers = 0


def _draw_rows(probs: torch.Tensor, generators: list[torch.Generator | None]) -> list[torch.Tensor]:
    """``torch.multinomial`` per row with the row's generator, the rows spread over the intra-op threads.

    Why threads: with its own generator, ``multinomial`` draws one exponential per vocabulary entry (49k)
    serially, about 1 ms a row on this CPU, and that is what keeps a row's draws equal to ``generate``'s for the
    same seed; the op releases the GIL and each generator has its own lock, so rows draw in parallel between
    two forwards, when the cores are otherwise idle."""
    global _pool, _pool_workers

    def draw(i: int) -> torch.Tensor:
        return torch.multinomial(probs[i : i + 1], 1, generator=generators[i]).view(1)

    workers = torch.get_num_threads()
    if workers < 2 or len(generators) < 4:
        return [draw(i) for i in range(len(generators))]
    if _pool is None or _pool_workers != workers:
        _pool, _pool_workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score-sampler"), workers
    return list(_pool.map(draw, range(len(generators))))
