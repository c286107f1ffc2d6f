"""Log-probabilities of target tokens under ``hidden @ weight.T``, tiled, for devices without Triton (CPU).

``log p(target) = z_target - logsumexp(z)`` with the logits ``z`` computed a tile (tokens x vocabulary columns) at
a time and never kept: the forward folds each tile into a running max / sum of exponentials and the running argmax
(for the token-accuracy metric); the backward recomputes each tile, turns it into the logits' gradient in place
and accumulates the two gradient products.

Why not TRL's ``ChunkedLogProbFunction`` here (it is used on GPUs, where it runs its Triton kernels): off Triton it
falls back to about ten whole-tile torch passes per tile, and its exponentials run into float32's subnormal range
for every column more than ~87 below the row's maximum, which is most of a trained model's vocabulary. Such
``exp`` calls and the products of their subnormal results run 15-35 times slower on x86 CPUs (measured: one
907 x 8192 tile, ``exp`` 1.9 ms for inputs in [-20, 0] against 68 ms in [-150, 0]). They took a quarter of an SFT
step of SmolLM2-135M on this machine (``benchmarks/sft_throughput.py``), against 5% for their arithmetic. Here the
exponent is clamped at ``-EXP_FLOOR`` before ``exp``: a column that far below the maximum has probability under
1e-26, so clamping changes no float32 sum or gradient beyond rounding, and no value goes subnormal.
"""

from __future__ import annotations

import torch

EXP_FLOOR = 60.0  # exp(-60) = 8.8e-27: no float32 sum of a row moves, and times a loss weight >= 1e-11 stays normal
TOKEN_TILE = 512  # tokens x VOCAB tile of 512 x 8192 float32 = 16 MiB: one tile's passes stay near the caches


def _tiles(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


class TiledLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                vocab_tile: int):
        n, v = hidden.shape[0], weight.shape[0]
        dev = hidden.device
        log_z = torch.empty(n, device=dev, dtype=torch.float32)
        target_z = torch.empty(n, device=dev, dtype=torch.float32)
        argmax = torch.empty(n, device=dev, dtype=torch.long)
        buf = torch.empty((min(n, TOKEN_TILE), min(v, vocab_tile)), device=dev, dtype=hidden.dtype)
        for t0, t1 in _tiles(n, TOKEN_TILE):
            h = hidden[t0:t1]
            tgt = targets[t0:t1]
            run_max = torch.full((t1 - t0,), float("-inf"), device=dev, dtype=torch.float32)
            run_arg = torch.zeros(t1 - t0, device=dev, dtype=torch.long)
            sum_exp = torch.zeros(t1 - t0, device=dev, dtype=torch.float32)
            tz = torch.zeros(t1 - t0, device=dev, dtype=torch.float32)
            for v0, v1 in _tiles(v, vocab_tile):
                tile = torch.mm(h, weight[v0:v1].t(), out=buf[: t1 - t0, : v1 - v0])
                if bias is not None:
                    tile.add_(bias[v0:v1])
                local = tgt - v0
                inside = (local >= 0) & (local < v1 - v0)
                tz = torch.where(inside, tile.gather(1, local.clamp(0, v1 - v0 - 1)[:, None])[:, 0].float(), tz)
                m, arg = tile.max(dim=1)  # the first maximum: ties go to the earlier column, as argmax does
                m = m.float()
                better = m > run_max
                run_arg = torch.where(better, arg + v0, run_arg)
                new_max = torch.maximum(run_max, m)
                sum_exp.mul_(torch.exp(run_max - new_max))
                sum_exp.add_(tile.sub_(new_max[:, None].to(tile.dtype)).clamp_(min=-EXP_FLOOR).exp_().sum(1,
                             dtype=torch.float32))
                run_max = new_max
            log_z[t0:t1] = run_max + sum_exp.log()
            target_z[t0:t1] = tz
            argmax[t0:t1] = run_arg
        ctx.save_for_backward(hidden, weight, bias, targets, log_z)
        ctx.vocab_tile = vocab_tile
        top1 = argmax == targets
        ctx.mark_non_differentiable(top1)
        return target_z - log_z, top1

    @staticmethod
    def backward(ctx, grad_logp: torch.Tensor | None, _grad_top1):
        from trl.trainer.utils import maybe_gather_lm_head_ctx  # DeepSpeed ZeRO-3: the head is gathered again

        hidden, weight, bias, targets, log_z = ctx.saved_tensors
        with maybe_gather_lm_head_ctx(weight, bias):
            return TiledLogProb._backward(ctx, grad_logp, hidden, weight, bias, targets, log_z)

    @staticmethod
    def _backward(ctx, grad_logp, hidden, weight, bias, targets, log_z):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if grad_logp is None:
            return None, None, None, None, None
        n, v = hidden.shape[0], weight.shape[0]
        dev = hidden.device
        g = grad_logp.float()
        grad_h = torch.zeros(hidden.shape, device=dev, dtype=torch.float32) if need_h else None
        grad_w = torch.empty(weight.shape, device=dev, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros(v, device=dev, dtype=torch.float32) if need_b else None
        buf = torch.empty((min(n, TOKEN_TILE), min(v, ctx.vocab_tile)), device=dev, dtype=hidden.dtype)
        rows = torch.arange(min(n, TOKEN_TILE), device=dev)
        for t0, t1 in _tiles(n, TOKEN_TILE):
            h = hidden[t0:t1]
            gt = g[t0:t1, None].to(hidden.dtype)
            lz = log_z[t0:t1, None].to(hidden.dtype)
            tgt = targets[t0:t1]
            for v0, v1 in _tiles(v, ctx.vocab_tile):
                w = weight[v0:v1]
                tile = torch.mm(h, w.t(), out=buf[: t1 - t0, : v1 - v0])
                if bias is not None:
                    tile.add_(bias[v0:v1])
                # d log p_target / d z_j = 1[j = target] - p_j, times the incoming gradient
                tile.sub_(lz).clamp_(min=-EXP_FLOOR).exp_().mul_(-gt)
                local = tgt - v0
                inside = ((local >= 0) & (local < v1 - v0)).nonzero()[:, 0]
                if inside.numel():
                    tile.index_put_((rows[: t1 - t0][inside], local[inside]), gt[inside, 0], accumulate=True)
                if grad_h is not None:
                    grad_h[t0:t1].addmm_(tile.float(), w.float())  # .float() of a float32 tensor is itself
                if grad_w is not None:
                    if t0 == 0:  # each vocabulary block's first token tile writes it: no zero fill of [V, H]
                        torch.mm(tile.t().float(), h.float(), out=grad_w[v0:v1])
                    else:
                        grad_w[v0:v1].addmm_(tile.t().float(), h.float())
                if grad_b is not None:
                    grad_b[v0:v1] += tile.sum(0, dtype=torch.float32)
        return (grad_h.to(hidden.dtype) if grad_h is not None else None,
                grad_w.to(weight.dtype) if grad_w is not None else None,
                grad_b.to(bias.dtype) if grad_b is not None else None, None, None)
