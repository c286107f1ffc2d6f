"""Supervised fine-tuning on trajectories, assistant turns only (BC init, SCoRe-SFT, the BC baseline).

Built on TRL's ``SFTTrainer`` (padding-free batches; the loss from the trained tokens' hidden states
only, see :mod:`score_distill.training.sft_trainer`) with pre-tokenized examples: each record is rendered with
``Trajectory.to_messages()`` and tokenized by :func:`~score_distill.training.chat_tokenize.tokenize_chat`
into ``input_ids`` + ``labels``. TRL sees an ``input_ids`` column and a ``labels`` column and uses
both as they are (no re-templating, no mask of its own), so the loss mask is exactly ours,
end-of-turn tokens included. Truncation is ours too (keep the start), so TRL's ``max_length`` is off.

Layout of ``out_dir``: ``checkpoint-N/`` (every ``save_steps``; resumable), ``runs/`` (TensorBoard),
``adapter/`` (LoRA runs), ``model/`` (the final plain model + tokenizer: LoRA merged in),
``sft_config.json`` and ``data_fingerprint.txt`` (a resume with other settings or other data is an
error, not a silent mix), ``train_result.json`` (written last: its presence means the run is done), then
``trainer_state.json`` (the final log history) in place of the checkpoints unless ``keep_finished_checkpoints``.

Works unchanged under ``accelerate launch`` (DDP, DeepSpeed ZeRO-3, FSDP; see ``configs/accelerate``):
the Trainer reads the distributed set-up from the environment, and only the main process merges and
writes the final folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from score_distill.training.chat_tokenize import IGNORE_INDEX, tokenize_chat
from score_distill.trajectory import Trajectory
from score_distill.utils.config_diff import config_changes
from score_distill.utils.jsonl import write_atomic, write_json

# torch, transformers, peft, trl and datasets are imported inside the functions that train: SFTConfig is part of
# RunConfig, which `score-distill --help` and `score-distill config` load.

RESULT_FILE = "train_result.json"
STATE_FILE = "trainer_state.json"  # the final trainer state (log history), kept when the checkpoints go
CONFIG_FILE = "sft_config.json"
FINGERPRINT_FILE = "data_fingerprint.txt"


class SFTConfig(BaseModel):
    """SFT settings. Defaults follow the reference (full fine-tune, cosine, warmup 0.1) at CPU scale."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = 1e-5
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs (benchmarks, smoke runs)
    batch_size: int = Field(4, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=8)
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_steps: int = Field(50, ge=1)
    save_total_limit: int | None = 3
    keep_finished_checkpoints: bool = Field(
        False, description="Keep the trainer checkpoints (weights and optimizer state: about 12 bytes a parameter "
        "each) once the final model is written. Only an interrupted run resumes from them, so by default they "
        "are removed then; the final trainer state stays as trainer_state.json.")
    logging_steps: int = Field(1, ge=1)
    bf16: Literal["auto"] | bool = "auto"  # auto: bf16 where the GPU supports it, fp32 on CPU
    # Activation checkpointing costs a third more compute; only for models/lengths that do not fit otherwise.
    gradient_checkpointing: bool = False
    padding_free: bool = Field(
        True, description="Concatenate a batch into one row without padding (attention stays within each sequence).")
    report_to: Literal["auto", "none", "tensorboard", "wandb", "trackio"] = "auto"
    system_prompt: str | None = None  # None: the CodeAct system prompt for each task's tools
    # A student step the parser had to repair (no code block, unclosed tag, ...) is re-rendered from what
    # could be recovered, e.g. as an empty code block: training on it teaches the student its own
    # breakage. Kept as context, not trained. Teacher steps are always trained (vetted, canonical).
    train_malformed_student_steps: bool = Field(
        False, description="Train student steps that had format errors too (default: context only, no loss).")


class NothingToTrain(ValueError):
    """Every record's assistant turns are malformed student steps: no data, not a configuration error."""


class NoTrainedToken(ValueError):
    """No record keeps a trained token after tokenization: empty data or ``max_length`` too small."""


class TrainResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: str
    steps: int
    seconds: float
    losses: list[float]
    loss_steps: list[int]
    n_records: int
    n_dropped: int = 0  # records with no trained token left after truncation
    n_truncated: int = 0  # records cut to max_length
    n_untrained_steps: int = 0  # malformed student steps kept as context only
    tokens_per_epoch: int = 0
    trained_tokens_per_epoch: int = 0
    tokens_seen: int | None = None  # tokens forwarded in training, padding excluded (compute accounting)
    eval_loss: float | None = None
    resumed_from: str | None = None


def _messages(record: Any, cfg: SFTConfig) -> list[dict[str, Any]]:
    if isinstance(record, Trajectory):
        msgs: list[dict[str, Any]] = record.to_messages(system=cfg.system_prompt)
        if not cfg.train_malformed_student_steps:
            turns = [m for m in msgs if m["role"] == "assistant"]  # one per step, in order
            for m, step in zip(turns, record.steps, strict=True):
                if step.origin == "student" and step.format_errors:
                    m["train"] = False
        return msgs
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        return record["messages"]
    raise TypeError(f"expected a Trajectory or a {{'messages': [...]}} dict, got {type(record).__name__}")


def tokenize_records(tokenizer: Any, records: list[Any], cfg: SFTConfig) -> tuple[list[dict[str, list[int]]], dict]:
    """Tokenize records for training; drop those left with no trained token. Returns (rows, stats)."""
    rows: list[dict[str, list[int]]] = []
    stats = {"n_records": len(records), "n_dropped": 0, "n_truncated": 0, "tokens": 0, "trained": 0,
             "n_untrained_steps": 0, "n_all_untrained": 0}
    for i, rec in enumerate(records):
        try:
            msgs = _messages(rec, cfg)
            enc = tokenize_chat(tokenizer, msgs, max_length=cfg.max_length)
        except ValueError as e:
            rid = getattr(rec, "id", i)
            raise ValueError(f"record {i} (id {rid}): {e}") from e
        stats["n_truncated"] += int(enc["truncated"] > 0)
        turns = [m for m in msgs if m.get("role") == "assistant"]
        untrained = sum(1 for m in turns if m.get("train") is False)
        stats["n_untrained_steps"] += untrained
        stats["n_all_untrained"] += int(bool(turns) and untrained == len(turns))
        n_trained = sum(1 for lab in enc["labels"] if lab != IGNORE_INDEX)
        if n_trained == 0:
            stats["n_dropped"] += 1
            continue
        stats["tokens"] += len(enc["input_ids"])
        stats["trained"] += n_trained
        rows.append({"input_ids": enc["input_ids"], "labels": enc["labels"]})
    return rows, stats


def _fingerprint(rows: list[dict[str, list[int]]]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["input_ids"], r["labels"]]).encode())
    return h.hexdigest()


def _use_bf16(cfg: SFTConfig) -> bool:
    import torch

    if cfg.bf16 == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(cfg.bf16)


def _report_to(cfg: SFTConfig) -> list[str] | str:
    if cfg.report_to == "auto":
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") else "none"
    return cfg.report_to


def _check_same_run(out: Path, cfg: SFTConfig, fingerprint: str, model_path: str, is_main: bool) -> None:
    """A resume must see the same settings and data as the run it continues."""
    # Housekeeping that changes nothing trained is left out: a run started before such a key existed resumes.
    saved = {"config": cfg.model_dump(exclude={"keep_finished_checkpoints"}), "model_path": model_path}
    cfg_file, fp_file = out / CONFIG_FILE, out / FINGERPRINT_FILE
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text())
        now = json.loads(json.dumps(saved))
        if old != now:
            was = {**old.get("config", {}), "model_path": old.get("model_path")}
            new = {**now["config"], "model_path": model_path}
            diff = ", ".join(config_changes(was, new))
            raise ValueError(f"{cfg_file}: this out_dir was started with other settings ({diff}); use a new out_dir")
    if fp_file.exists() and fp_file.read_text().strip() != fingerprint:
        raise ValueError(f"{fp_file}: this out_dir was started on other training data; use a new out_dir")
    if is_main:
        write_json(cfg_file, saved)
        write_atomic(fp_file, fingerprint + "\n")


def _load_model(model_path: str, cfg: SFTConfig, bf16: bool):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    # Seeds BEFORE the LoRA adapter exists: its random init must follow cfg.seed.
    transformers.set_seed(cfg.seed)
    # LoRA freezes the base, so it can sit in bf16; a full fine-tune keeps fp32 master weights
    # (bf16 autocast on GPU, as DeepSpeed/FSDP mixed precision expects).
    dtype = torch.bfloat16 if (bf16 and cfg.lora) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lcfg)
    return model


def _merge_adapter(base_path: str, adapter_dir: Path, target: Path) -> None:
    """Merge a saved adapter into a fresh copy of the base (works the same after DDP/ZeRO-3/FSDP,
    since the adapter on disk is already consolidated)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(target)


def _finalize_dir(tmp: Path, final: Path) -> None:
    if final.exists():  # left by an earlier run that died before writing train_result.json
        shutil.rmtree(final)
    tmp.rename(final)


def resolve_model_path(name_or_path: str) -> str:
    """The project's one model resolver (:func:`score_distill.models.resolve.resolve_model`)."""
    from score_distill.models.resolve import resolve_model

    return resolve_model(name_or_path)


def last_complete_checkpoint(out: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing, or None.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint without it was cut by a crash
    (kill -9 mid-save); such folders are moved aside so the Trainer neither resumes from nor
    rotates onto them.
    """
    ckpts = sorted((p for p in out.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for p in ckpts:
        if (p / "trainer_state.json").exists():
            return str(p)
        p.rename(p.with_name(f"incomplete-{p.name}-{int(time.time())}"))
    return None


def build_trainer(model_path: str, cfg: SFTConfig, out: Path, tokenizer: Any, rows: list[dict[str, list[int]]],
                  eval_rows: list[dict[str, list[int]]] | None = None, callbacks: list[Any] | None = None) -> Any:
    """The Trainer :func:`train_sft` runs (``rows`` from :func:`tokenize_records`), with its log dicts routed to
    logging and its steps to the stage's bar instead of stdout (:mod:`score_distill.training.trainer_log`)."""
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig

    from score_distill.training.sft_trainer import TrainedTokenSFTTrainer
    from score_distill.training.trainer_log import route_trainer_output

    bf16 = _use_bf16(cfg)
    args = TRLSFTConfig(
        output_dir=str(out),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of total steps (transformers 5)
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        data_seed=cfg.seed,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to=_report_to(cfg),
        bf16=bf16,
        use_cpu=not _cuda(),
        activation_checkpointing=cfg.gradient_checkpointing,
        max_length=None,  # truncated already (keep start), see tokenize_records
        packing=False,  # whole trajectories per example: batches stay what batch_size says
        padding_free=cfg.padding_free,
        prediction_loss_only=True,  # the trained-token loss builds no logits
        dataset_kwargs={},
        eval_strategy="no",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",  # the compute a comparison reports (pipeline compute records)
    )
    model = _load_model(model_path, cfg, bf16)
    trainer = TrainedTokenSFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    return route_trainer_output(trainer)


def train_sft(
    model_path: str | Path,
    train_records: list[Any],
    cfg: SFTConfig,
    out_dir: str | Path,
    resume: bool = True,
    eval_records: list[Any] | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Fine-tune ``model_path`` on the assistant turns of ``train_records`` (Trajectory objects or
    ``{"messages": [...]}`` dicts); returns where the final plain model is and how training went.

    ``resume=True``: a finished run in ``out_dir`` is returned as is; an interrupted one continues
    from its last checkpoint (same data order, RNG and scheduler state). ``resume=False`` refuses an
    ``out_dir`` that already holds checkpoints rather than overwrite them.
    """
    from transformers import AutoTokenizer

    from score_distill.utils.malloc import tune_malloc

    tune_malloc()  # training's activations stay mapped between steps
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model_path(str(model_path))
    if resume and (out / RESULT_FILE).exists() and (out / "model").exists():
        if not cfg.keep_finished_checkpoints:
            prune_checkpoints(out)  # a run killed while pruning
        return TrainResult.model_validate_json((out / RESULT_FILE).read_text())
    last = last_complete_checkpoint(out)
    if last and not resume:
        raise FileExistsError(f"{out} already holds checkpoints ({Path(last).name}); pass resume=True or a new out_dir")

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows, stats = tokenize_records(tokenizer, list(train_records), cfg)
    if not rows:
        if stats["n_all_untrained"] == stats["n_records"]:
            raise NothingToTrain(f"all {stats['n_records']} records consist of student steps with format errors "
                                 "(kept as context only: sft.train_malformed_student_steps=false)")
        raise NoTrainedToken("no training example has a trained token (empty data, or max_length too small)")
    eval_rows = tokenize_records(tokenizer, list(eval_records), cfg)[0] if eval_records else None

    trainer = build_trainer(model_path, cfg, out, tokenizer, rows, eval_rows, callbacks)
    acc = trainer.accelerator
    _check_same_run(out, cfg, _fingerprint(rows), model_path, acc.is_main_process)
    acc.wait_for_everyone()

    t0 = time.time()
    trainer.train(resume_from_checkpoint=last if last else None)
    seconds = time.time() - t0
    eval_loss = trainer.evaluate()["eval_loss"] if eval_rows else None

    final, tmp = out / "model", out / "model.tmp"
    if cfg.lora:
        trainer.save_model(str(out / "adapter"))  # every process: gathers sharded weights where needed
        acc.wait_for_everyone()
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            _merge_adapter(model_path, out / "adapter", tmp)
    else:
        trainer.save_model(str(tmp))
    acc.wait_for_everyone()

    log = trainer.state.log_history
    losses = [(int(e["step"]), float(e["loss"])) for e in log if "loss" in e and "step" in e]
    result = TrainResult(
        model_dir=str(final),
        steps=int(trainer.state.global_step),
        seconds=round(seconds, 3),
        losses=[v for _, v in losses],
        loss_steps=[s for s, _ in losses],
        n_records=stats["n_records"],
        n_dropped=stats["n_dropped"],
        n_truncated=stats["n_truncated"],
        n_untrained_steps=stats["n_untrained_steps"],
        tokens_per_epoch=stats["tokens"],
        trained_tokens_per_epoch=stats["trained"],
        eval_loss=eval_loss,
        resumed_from=Path(last).name if last else None,
        tokens_seen=int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0) or None,
    )
    if acc.is_main_process:
        tokenizer.save_pretrained(tmp)
        _finalize_dir(tmp, final)
        trainer.state.save_to_json(str(out / STATE_FILE))
        write_json(out / RESULT_FILE, result.model_dump())
        if not cfg.keep_finished_checkpoints:
            prune_checkpoints(out)
    acc.wait_for_everyone()
    return result


def prune_checkpoints(out: Path) -> None:
    """Remove a finished run's checkpoints (and folders a crash cut): the run is done once ``train_result.json``
    exists, so nothing resumes from them, and each holds the weights and optimizer state (three copies of a
    7B model's are hundreds of GB). The final log history stays in ``trainer_state.json``."""
    if not (out / STATE_FILE).exists():
        return  # finished before the state was kept: its last checkpoint is where the history is
    for p in [*out.glob("checkpoint-*"), *out.glob("incomplete-checkpoint-*")]:
        shutil.rmtree(p, ignore_errors=True)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
