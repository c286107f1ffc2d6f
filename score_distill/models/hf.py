"""Policy backend on a local transformers model (CPU or GPU).

Two ways to generate with the same model object: ``generate(chats)`` (one batched ``model.generate``
with left padding, for one-shot prompts) and ``rollout_engine()``, the in-process engine the agent
loop runs episodes on (KV caches kept across turns, continuous batching; see
:mod:`score_distill.engine`). The model and tokenizer are public attributes: the RL stage
generates with the very model object it trains, so weight updates are seen without reloading.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from score_distill.models.base import Chat, Completion, SamplingParams

log = logging.getLogger(__name__)

SMOLLM2_NAMES = ("smollm2-135m", "smollm2-135m-instruct", "smollm2")
TINY_NAMES = ("tiny",)


def resolve_student_path(name_or_path: str | os.PathLike) -> str:
    """The project's one model resolver (:func:`score_distill.models.resolve.resolve_model`)."""
    from score_distill.models.resolve import resolve_model

    return resolve_model(name_or_path)


def default_device_dtype(device: str | torch.device | None = None,
                         dtype: torch.dtype | None = None) -> tuple[torch.device, torch.dtype]:
    """float32 on CPU; bf16 on CUDA when the card supports it."""
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return dev, dtype


def load_student(name_or_path: str | os.PathLike, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) for "smollm2-135m", "tiny", a local HF folder, or a hub id."""

    path = resolve_student_path(name_or_path)
    dev, dt = default_device_dtype(device, dtype)
    is_local = Path(path).is_dir()
    if not is_local and (Path(path).expanduser().exists() or path.startswith(("/", ".", "~"))):
        raise FileNotFoundError(f"model path {path!r} is not a folder with a saved model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
    except OSError as e:
        if is_local:
            raise OSError(f"cannot load a model from folder {path}: {e}") from e
        raise OSError(
            f"{path!r} is neither a built-in student ({', '.join(SMOLLM2_NAMES[:1] + TINY_NAMES)}) nor a local "
            f"folder, and loading it from the Hugging Face hub failed (no network access? set HF_HUB_OFFLINE=1 "
            f"to fail fast): {e}"
        ) from e
    model.to(dev)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _end_of_turn_ids(tokenizer: Any, model: Any) -> list[int]:
    """Token ids that end the assistant turn: the tokenizer's EOS (<|im_end|> for ChatML models)
    plus whatever the generation config lists."""
    ids: list[int] = []
    for cand in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        for i in cand if isinstance(cand, list) else [cand]:
            if i is not None and i not in ids:
                ids.append(int(i))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if im_end is not None and im_end not in ids:
        ids.append(int(im_end))
    return ids


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """Cut ``text`` at the earliest stop string. A closing tag (``</code>``) is kept, since it is
    part of the turn's format; other stops (``\\nObservation:``) are removed."""
    best: tuple[int, str] | None = None
    for s in stops:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    if best is None:
        return text, None
    i, s = best
    keep = s.startswith("</") and s.endswith(">")
    return text[: i + len(s)] if keep else text[:i], s


class TransformersPolicy:
    """``generate(chats, params)`` with a local model; see the module docstring.

    ``model`` may be a loaded model (then ``tokenizer`` is required) or a name/path for
    :func:`load_student`. ``batch_size`` bounds sequences decoded at once (chats x n).
    ``Completion.seconds`` is the wall time of the batch the completion was decoded in.
    """

    def __init__(self, model: Any, tokenizer: Any = None, name: str | None = None,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 batch_size: int = 16):
        if isinstance(model, str | os.PathLike):
            label = str(model)
            model, tokenizer = load_student(model, device=device, dtype=dtype)
            name = name or label
        elif tokenizer is None:
            raise ValueError("TransformersPolicy(model, tokenizer): a tokenizer is required with a loaded model")
        elif device is not None or dtype is not None:
            model.to(device=device, dtype=dtype)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; TransformersPolicy needs one to format chats")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.batch_size = batch_size
        self.shared_attention = True  # the engine reads a shared prefix once per decode step (engine.cascade)
        self.mixed_steps = True  # the engine feeds appended ids in the decoding rows' forward (engine.cascade)
        self.draft_tokens = 0  # > 0: the engine verifies up to this many prompt-lookup ids a step (speculative)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kw: Any) -> TransformersPolicy:
        return cls(str(path), **kw)

    load = from_pretrained  # TransformersPolicy.load("smollm2-135m" | "tiny" | folder | hub id)

    def __repr__(self) -> str:
        return f"TransformersPolicy(name={self.name!r}, device={self.device}, batch_size={self.batch_size})"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- the rollout engine ---------------------------------------------------------------
    def chat_glue(self) -> Any:
        """The chat template's glue as ids (cached: the tokenizer does not change)."""
        from score_distill.engine.chat import ChatGlue

        if getattr(self, "_glue", None) is None:
            self._glue = ChatGlue(self.tokenizer, _end_of_turn_ids(self.tokenizer, self.model))
        return self._glue

    def rollout_engine(self, params: SamplingParams, stop: list[str], max_rows: int) -> Any:
        """A :class:`~score_distill.engine.RolloutEngine` on this model, or None when the model's attention
        or chat template does not allow one (the agent loop then generates round by round)."""
        from score_distill.engine import RolloutEngine, engine_supported
        from score_distill.training.chat_tokenize import ChatTemplateError

        if not engine_supported(self.model):
            return None
        try:
            self.chat_glue()
        except ChatTemplateError as e:
            log.warning("%s: no rollout engine (%s); generating round by round", self.name, e)
            return None
        return RolloutEngine(self.model, self.tokenizer, params, max_rows=max_rows,
                             eos_ids=_end_of_turn_ids(self.tokenizer, self.model), stop=stop,
                             shared_attention=self.shared_attention, mixed_steps=self.mixed_steps,
                             draft_tokens=self.draft_tokens)

    # -- generation -----------------------------------------------------------------------
    def encode_chats(self, chats: list[Chat]) -> list[list[int]]:
        """Prompt ids: the chat template with the assistant generation prompt."""
        out = []
        for chat in chats:
            text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            out.append(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return out

    def generate(self, chats: list[Chat], params: SamplingParams) -> list[Completion]:
        if not chats:
            return []
        prompts = self.encode_chats(chats)
        per_batch = max(1, self.batch_size // params.n)
        was_training = self.model.training
        self.model.eval()  # dropout off: generation must not depend on the trainer's mode
        results: list[Completion] = []
        try:
            with torch.random.fork_rng(devices=self._rng_devices()):
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                for start in range(0, len(prompts), per_batch):
                    results.extend(self._generate_batch(prompts[start:start + per_batch], params))
        finally:
            if was_training:
                self.model.train()
        return results

    def _rng_devices(self) -> list[int]:
        dev = self.device
        return [dev.index or 0] if dev.type == "cuda" else []

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        try:
            return self._decode(prompts, params)
        except (RuntimeError, ValueError) as e:  # e.g. out of memory, or a prompt past the context size
            if len(prompts) > 1:
                log.warning("%s: batch of %d failed (%s); retrying one by one", self.name, len(prompts), e)
                return [c for p in prompts for c in self._generate_batch([p], params)]
            log.warning("%s: generation failed: %s", self.name, e)
            return [Completion(text="", prompt_tokens=len(prompts[0]), finish_reason="error",
                               error=f"{type(e).__name__}: {e}") for _ in range(params.n)]

    def _decode(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        tok = self.tokenizer
        pad_id = tok.pad_token_id
        width = max(len(p) for p in prompts)
        # Left padding: every row's last prompt token sits at the same position, so new tokens align.
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        eot = _end_of_turn_ids(tok, self.model)
        sample = params.temperature > 0
        kw: dict[str, Any] = dict(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            num_return_sequences=params.n,
            repetition_penalty=params.repetition_penalty,
            eos_token_id=eot,
            pad_token_id=pad_id,
            use_cache=True,  # trainers may have turned it off for gradient checkpointing
        )
        if sample:
            # top_k <= 0 means no top-k (vLLM uses -1); transformers disables it with 0.
            kw.update(temperature=params.temperature, top_p=params.top_p, top_k=max(params.top_k, 0))
        else:  # greedy: unset the sampling knobs a generation_config may carry (avoids warnings)
            kw.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kw.update(stop_strings=list(params.stop), tokenizer=tok)
        t0 = time.monotonic()
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kw)
        seconds = time.monotonic() - t0
        new = out[:, width:].tolist()
        completions = []
        for row, ids in enumerate(new):
            prompt_len = len(prompts[row // params.n])
            completions.append(self._finish(ids, eot, prompt_len, params, seconds))
        return completions

    def _finish(self, ids: list[int], eot: list[int], prompt_len: int, params: SamplingParams,
                seconds: float) -> Completion:
        end = next((i for i, t in enumerate(ids) if t in eot), None)
        if end is not None:
            ids, reason = ids[: end + 1], "stop"  # keep the end-of-turn token: trainers learn to stop
            body = ids[:-1]
        else:
            reason, body = "length", ids
        decode = self.tokenizer.decode
        text, stop = cut_at_stop(decode(body, skip_special_tokens=True), params.stop)
        if stop is not None:
            # Ids up to the token that completed the stop string (generate pads the row after it).
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if stop in decode(body[:mid], skip_special_tokens=True):
                    hi = mid
                else:
                    lo = mid + 1
            ids, reason = body[:lo], "stop"
        comp = Completion(text=text, prompt_tokens=prompt_len, completion_tokens=len(ids), finish_reason=reason,
                          seconds=seconds, token_ids=ids)
        if stop is not None:
            comp.extra["stop"] = stop
        return comp
