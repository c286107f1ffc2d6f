"""Log-probabilities of the trained tokens only: padding-free rows, LM head on trained positions only.

:func:`install` patches a causal LM so that ``model(input_ids, labels=..., trained_logprobs=True)`` returns
``log p(label_t | ids_<t)`` for the positions whose label is not ``-100`` and nothing else: the backbone runs
once, its hidden states are gathered at the trained positions, and only those rows go through the LM head,
tiled over the vocabulary by TRL's ``ChunkedLogProbFunction`` on GPUs and by
:class:`~score_distill.training.tiled_logprob.TiledLogProb` on CPU (so neither the ``[tokens, vocab]`` logits of
the masked positions nor a full ``[trained, vocab]`` tensor exists at once; the vocabulary is 49k).

Why our own forward rather than TRL's ``add_fused_lm_head`` (which ``SFTTrainer`` installs): TRL projects
only the trained rows on CUDA/XPU but *every* row elsewhere (its kernels keep fixed tile shapes for
Neuron), and with SDPA attention (CPU, or a GPU without flash attention) transformers turns a padding-free
row of several sequences into one dense block-diagonal mask, i.e. attention over the whole row. A
padding-free row (``position_ids`` restarting at 0, TRL's ``padding_free`` collator layout) goes through
the backbone as it is when the attention implementation is a varlen kernel (flash attention); otherwise
its sequences are run as right-padded sub-batches of similar length (the cheapest measured layout without a
varlen kernel, see ``_backbone_hidden``) and their hidden states re-packed. Everything goes through the model's
``forward``, so DDP, FSDP, PEFT and accelerate's wrappers see one ordinary call.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed.tensor import DTensor
from trl.kernels import ChunkedLogProbFunction
from trl.trainer.utils import maybe_gather_lm_head_ctx

from score_distill.training.tiled_logprob import TiledLogProb

IGNORE_INDEX = -100
# Vocabulary columns per LM-head tile: 8192 x 4096 tokens x 4 bytes = 128 MiB of scratch, not 512 (TRL's 32768).
VOCAB_CHUNK = 8192
_FLAG = "_score_distill_trained_logprobs"


@dataclass
class TrainedLogProbs:
    """``log_probs[k]`` is the log-probability of the k-th trained label, in row-major order of ``labels``."""

    log_probs: torch.Tensor  # [K], float32
    label_mask: torch.Tensor  # [B, T-1] bool: which (shifted) labels are trained
    is_top1: torch.Tensor | None = None  # [K] bool, for the token-accuracy metric


def _segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each sequence of a one-row padding-free batch (positions restart at 0)."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    ends = [*starts[1:], position_ids.shape[1]]
    return list(zip(starts, ends, strict=True))


# A padded sub-batch may hold at most this many slots per real token; longer rows start a new sub-batch. Suites
# mix 500- and 1,200-token trajectories: one padded batch of both can be a third padding slots (measured gain
# on the default run's data: 104.9 -> 110.8 tokens/s, docs/benchmarks.md).
MAX_PADDING_RATIO = 1.25


def _length_groups(segs: list[tuple[int, int]]) -> list[list[int]]:
    """Indices of ``segs`` in sub-batches of similar length (longest first), each padded to its longest row with
    at most ``MAX_PADDING_RATIO`` slots per real token. The maths is the same as one padded batch: only less of
    the work is padding."""
    order = sorted(range(len(segs)), key=lambda i: segs[i][0] - segs[i][1])  # longest first
    groups: list[list[int]] = []
    for i in order:
        n = segs[i][1] - segs[i][0]
        if groups:
            g = groups[-1]
            width = segs[g[0]][1] - segs[g[0]][0]
            real = sum(segs[j][1] - segs[j][0] for j in g) + n
            if width * (len(g) + 1) <= MAX_PADDING_RATIO * real:
                g.append(i)
                continue
        groups.append([i])
    return groups


def _varlen_attention(model: Any) -> bool:
    impl = getattr(model.config, "_attn_implementation", None) or ""
    return "flash" in impl  # flash_attention_2/3 and hub flash kernels read cu_seq_lens / position_ids


def _backbone_hidden(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     position_ids: torch.Tensor | None, extra: dict[str, Any]) -> torch.Tensor:
    backbone = model.base_model  # the decoder stack (PreTrainedModel.base_model: model.model for Llama)
    packed = position_ids is not None and attention_mask is None and input_ids.shape[0] == 1
    if packed and not _varlen_attention(model):
        # No varlen kernel: the row's sequences go through as right-padded sub-batches of similar length, and their
        # hidden states are re-packed. Measured on CPU (SmolLM2-135M, 4 x ~520 tokens, forward + backward, CPU
        # seconds): padded 35-43, one row with transformers' block-diagonal mask 52, one call per sequence 78.
        segs = _segments(position_ids)
        hidden: dict[int, torch.Tensor] = {}
        for group in _length_groups(segs):
            width = max(segs[i][1] - segs[i][0] for i in group)
            ids = input_ids.new_zeros((len(group), width))
            for row, i in enumerate(group):
                s, e = segs[i]
                ids[row, : e - s] = input_ids[0, s:e]
            # No padding mask: the pads are on the right, so under the causal mask no real position attends to
            # one, and without a mask SDPA runs with is_causal=True, which skips the blocks above the diagonal
            # (with a mask it computes every block: a third of a step's attention time, measured on CPU).
            h = backbone(input_ids=ids, attention_mask=None, use_cache=False).last_hidden_state
            for row, i in enumerate(group):
                hidden[i] = h[row, : segs[i][1] - segs[i][0]]
        return torch.cat([hidden[i] for i in range(len(segs))], dim=0)[None]
    packing_keys = ("cu_seq_lens", "max_length", "seq_idx")
    kwargs = {k: v for k, v in extra.items() if k.startswith(packing_keys)} if packed else {}
    out = backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                   **kwargs)
    return out.last_hidden_state


def _trained_logprobs(model: Any, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None,
                      position_ids: torch.Tensor | None, with_top1: bool, extra: dict[str, Any]) -> TrainedLogProbs:
    hidden = _backbone_hidden(model, input_ids, attention_mask, position_ids, extra)[:, :-1]
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    if position_ids is not None:  # a label at a sequence start would be predicted from the previous sequence
        mask = mask & (position_ids[:, 1:] != 0)
    head = model.get_output_embeddings()
    weight, bias = head.weight, head.bias
    if isinstance(weight, DTensor):  # FSDP2 shards: the head is read directly, not called (as TRL does)
        weight = weight.full_tensor()
        bias = bias.full_tensor() if bias is not None else None
    h = hidden[mask].to(weight.device)
    outputs = ("log_probs", "is_top1") if with_top1 else ("log_probs",)
    cfg = model.config.get_text_config()
    softcap = getattr(cfg, "final_logit_softcapping", None)
    with maybe_gather_lm_head_ctx(weight, bias):  # DeepSpeed ZeRO-3: gather the head for this direct use
        if weight.device.type == "cpu" and softcap is None:  # no Triton: see tiled_logprob for why not TRL's
            logp, top1 = TiledLogProb.apply(h, weight, bias, target[mask].to(weight.device), VOCAB_CHUNK)
            top1 = top1 if with_top1 else None
        else:
            logp, _, _, _, top1 = ChunkedLogProbFunction.apply(
                h, weight, bias, target[mask].to(weight.device), 1.0, VOCAB_CHUNK, softcap, 1.0, outputs)
    return TrainedLogProbs(log_probs=logp, label_mask=mask, is_top1=top1)


def install(model: Any) -> Any:
    """Patch ``model`` (a transformers causal LM; for PEFT, its base model) in place; returns it.

    Idempotent. Without ``trained_logprobs=True`` the forward is the original one (generation unchanged).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, _FLAG, False):
        return model
    scale = getattr(base.config.get_text_config(), "logit_scale", None)
    if scale not in (None, 1.0):
        raise ValueError(f"{type(base).__name__}: logit_scale={scale} is not supported by the trained-token head")
    original = base.forward

    @functools.wraps(type(base).forward)  # generate() validates its kwargs against the signature
    def forward(self, *args, trained_logprobs: bool = False, with_top1: bool = False, **kwargs):
        if not trained_logprobs:
            return original(*args, **kwargs)
        if args:
            raise TypeError("trained_logprobs=True takes keyword arguments only")
        return _trained_logprobs(self, kwargs.pop("input_ids"), kwargs.pop("labels"),
                                 kwargs.pop("attention_mask", None), kwargs.pop("position_ids", None),
                                 with_top1, kwargs)

    base.forward = types.MethodType(forward, base)
    setattr(base, _FLAG, True)
    return model


def pack(sequences: list[list[int]], masks: list[list[int]], device: Any = None) -> dict[str, torch.Tensor]:
    """One padding-free row: ids, labels (-100 where ``mask`` is 0) and ``position_ids`` restarting per sequence.

    ``mask[t] = 1`` trains token ``t`` (predicted from position ``t - 1``); ``mask[0]`` is ignored.
    """
    ids = [t for s in sequences for t in s]
    labels = [t if m and j > 0 else IGNORE_INDEX for s, ms in zip(sequences, masks, strict=True)
              for j, (t, m) in enumerate(zip(s, ms, strict=True))]
    pos = [j for s in sequences for j in range(len(s))]
    out = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "position_ids": torch.tensor([pos])}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out
