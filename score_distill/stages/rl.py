"""Stage 3, SCoRe-RL: GRPO from verified prefixes with the key-step reward.

``run_rl_stage`` loops: take the next batch of items (fixed seeded schedule), roll out G
continuations per item (in-process on the trained model, or through a vLLM server whose weights are
pushed after every update), reward them, one GRPO update (``ceil(items / rl.mini_batch_size)`` optimizer
steps per pass), append a line to ``out_dir/log.jsonl`` (reward_mean, groups_with_spread, clip_frac, kl,
and per step clip_frac_steps, kl_steps), checkpoint. Re-running the same call after a crash resumes from the last
checkpoint.

Files in ``out_dir``: ``log.jsonl`` (one line per update), ``rollouts.jsonl`` (one line per rollout:
item, reward, reason, answer), ``checkpoints/step_N/``, ``model/`` (the final model, LoRA merged),
``config.json``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from score_distill.rl.checkpoint import latest_checkpoint, load_optimizer_and_rng, load_state, save_checkpoint
from score_distill.rl.config import RLConfig
from score_distill.rl.equivalence import EquivalenceChecker, StepJudge
from score_distill.rl.grpo import GRPOUpdater, TrainSample, group_advantages
from score_distill.rl.items import RLItem
from score_distill.rl.reward import reason_counts
from score_distill.rl.rollout import encode_rollout, run_rollouts
from score_distill.rl.schedule import batch_schedule, items_fingerprint
from score_distill.utils.jsonl import append_jsonl, read_jsonl, write_json, write_jsonl
from score_distill.utils.progress import progress_bar

log = logging.getLogger(__name__)


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_model(model_path: str | os.PathLike, cfg: RLConfig, ckpt: Path | None):
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else None
    if cfg.lora is None:
        src = ckpt / "model" if ckpt else model_path
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
    else:
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
        if ckpt:
            model = PeftModel.from_pretrained(base, ckpt / "model", is_trainable=True)
        else:
            # Seeded before the adapter exists: LoRA's A matrices are random (a known resume pitfall).
            _set_seed(cfg.seed)
            lc = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                            target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
            model = get_peft_model(base, lc)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tokenizer


def _inprocess_policy(model: Any, tokenizer: Any, draft_tokens: int = 0) -> Any:
    from score_distill.models.hf import TransformersPolicy

    policy = TransformersPolicy(model, tokenizer=tokenizer)
    policy.draft_tokens = draft_tokens
    return policy


class VLLMWeightSync:
    """Pushes the trained weights into a ``trl vllm-serve`` server (NCCL) after each update.

    Needs a GPU, vLLM and the server started with TRL's weight-transfer flags; not exercised by the
    CPU test suite. LoRA adapters are merged for the push and unmerged after, so the server always
    serves plain base-model parameter names.
    """

    def __init__(self, base_url: str):
        # Lazy: only the vLLM rollout backend needs it, and where the vllm extra is installed it loads vllm (slow).
        from trl.generation.vllm_client import VLLMClient

        self.client = VLLMClient(base_url=base_url, connection_timeout=120)
        self.client.init_communicator(device=torch.cuda.current_device())

    def push(self, model: Any) -> None:
        if hasattr(model, "merge_adapter"):
            model.merge_adapter()
            try:
                params = [(n.replace("base_model.model.", "").replace(".base_layer", ""), p.data)
                          for n, p in model.named_parameters() if "lora_" not in n]
                meta = [(n, str(p.dtype).removeprefix("torch."), list(p.shape)) for n, p in params]
                self.client.update_named_params(meta, iter(params))
            finally:
                model.unmerge_adapter()
        else:
            self.client.update_model_params(model)
        self.client.reset_prefix_cache()


def _per_process(mini_batch_size: int | None, n_proc: int) -> int | None:
    """Items per optimizer step on each process (each process holds 1/n of a batch's items)."""
    return None if mini_batch_size is None else max(1, mini_batch_size // n_proc)


def _spread_share(rollouts: list[Any]) -> float:
    """Share of the batch's groups whose rewards are not all equal (the only ones with a learning signal)."""
    groups: dict[int, set[float]] = {}
    for r in rollouts:
        groups.setdefault(r.group, set()).add(r.reward)
    return sum(len(v) > 1 for v in groups.values()) / len(groups) if groups else 0.0


def _rollout_counter(bar: Any, u: int, n: int) -> Callable[[Any], None]:
    """Counts update ``u``'s ``n`` rollouts in the description of the bar of updates as their episodes end."""
    done = 0
    bar.note(f"(update {u + 1}: rollouts 0/{n})")

    def count(_trajectory: Any) -> None:
        nonlocal done
        done += 1
        bar.note(f"(update {u + 1}: rollouts {done}/{n})")

    return count


def _rollout_record(step: int, r: Any) -> dict[str, Any]:
    t = r.trajectory
    return {"step": step, "item": r.item.id, "kind": r.item.kind, "group": r.group, "reward": r.reward,
            "reason": r.reason, "method": r.method, "outcome": t.outcome, "final_answer": t.final_answer,
            "new_steps": len(t.steps) - r.n_prefix, "format_errors": t.format_error_count}


def run_rl_stage(
    model_path: str | os.PathLike,
    items: list[RLItem],
    cfg: RLConfig,
    out_dir: str | os.PathLike,
    tools_for: Callable | None = None,
    scorer: Callable | None = None,
    *,
    pool: Any | None = None,
    judge_policy: Any | None = None,
    rollout_policy: Any | None = None,
    progress: str | None = None,
) -> Path:
    """Train with GRPO from ``model_path`` on ``items``; returns the final model folder (``out_dir/model``).

    ``rollout_policy`` overrides the generator (default: the trained model in-process, or the vLLM
    server when ``cfg.rollout_backend == "vllm"``). ``judge_policy`` enables the LLM equivalence judge
    when ``cfg.equivalence.use_judge``. ``progress``: the label of a bar that counts the updates (the current
    update's rollouts in its description); None: no bar.
    """
    from score_distill.utils.malloc import tune_malloc

    tune_malloc()  # the updates' activations stay mapped between steps
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final_dir = out / "model"
    if not items:
        raise ValueError("no RL items")
    too_deep = [it.id for it in items if not cfg.long_horizon and len(it.prefix) >= cfg.max_steps]
    if too_deep:
        raise ValueError(
            f"{len(too_deep)} item(s) have a prefix of >= max_steps={cfg.max_steps} steps, e.g. {too_deep[:3]}")
    schedule = batch_schedule(len(items), cfg.items_per_update, cfg.epochs, cfg.seed)
    total = len(schedule) if cfg.max_updates is None else min(cfg.max_updates, len(schedule))
    fingerprint = items_fingerprint([it.id for it in items])

    ckpt = latest_checkpoint(out)
    start = 0
    if ckpt is not None:
        st = load_state(ckpt)
        if st.get("items") != fingerprint:
            raise ValueError(f"{ckpt}: checkpoint was made with other RL items ({st.get('items')} != {fingerprint})")
        start = int(st["next_update"])
        if start >= total and (final_dir / "config.json").exists():
            return final_dir
    _set_seed(cfg.seed)
    write_json(out / "config.json", cfg.model_dump(mode="json"))
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    model, tokenizer = _load_model(model_path, cfg, ckpt)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    # Updates logged after the last checkpoint (or before the first one: start 0) were lost with the
    # crash and are redone: drop their lines so the curve has no duplicates.
    for name in ("log.jsonl", "rollouts.jsonl"):
        if (out / name).exists():
            write_jsonl(out / name, [r for r in read_jsonl(out / name) if r["step"] < start])
    if ckpt is not None:
        load_optimizer_and_rng(ckpt, optimizer)
        log.info("resuming RL from %s (update %d of %d)", ckpt, start, total)

    unwrapped = accelerator.unwrap_model(model)
    sync = None
    if rollout_policy is not None:
        policy = rollout_policy
    elif cfg.rollout_backend == "vllm":
        from score_distill.models.openai_compat import OpenAIPolicy

        policy = OpenAIPolicy(cfg.vllm_base_url.rstrip("/") + "/v1", cfg.vllm_model)
        if accelerator.is_main_process:
            sync = VLLMWeightSync(cfg.vllm_base_url)
            sync.push(unwrapped)
    else:
        policy = _inprocess_policy(unwrapped, tokenizer, cfg.draft_tokens)
    own_pool = pool is None
    if own_pool:
        from score_distill.sandbox import SandboxConfig, SandboxPool

        pool = SandboxPool(SandboxConfig(), max_workers=max(1, min(4, os.cpu_count() or 1)))
    judge = None
    if cfg.equivalence.use_judge:
        if judge_policy is None:
            raise ValueError("equivalence.use_judge needs judge_policy")
        judge = StepJudge(judge_policy, cfg.equivalence.judge_cache or out / "judge_cache.jsonl",
                          max_new_tokens=cfg.equivalence.judge_max_new_tokens)
    checker = EquivalenceChecker(cfg.equivalence, judge)
    updater = GRPOUpdater(model, optimizer, accelerator, clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high,
                          kl_coef=cfg.kl_coef, ppo_epochs=cfg.ppo_epochs, micro_batch_size=cfg.micro_batch_size,
                          max_grad_norm=cfg.max_grad_norm, pad_id=tokenizer.pad_token_id,
                          mini_batch_size=_per_process(cfg.mini_batch_size, accelerator.num_processes))
    per_epoch = math.ceil(len(items) / cfg.items_per_update)
    bars = contextlib.ExitStack()
    bar = bars.enter_context(progress_bar(total, progress if accelerator.is_main_process else None, done=start))
    try:
        for u in range(start, total):
            t0 = time.perf_counter()
            batch = [items[i] for i in schedule[u]][accelerator.process_index::accelerator.num_processes]
            seed = cfg.seed * 1_000_003 + u  # every update's sampling is reproducible on its own
            torch.manual_seed(seed)
            model.eval()
            counter = _rollout_counter(bar, u, len(batch) * cfg.group_size)
            with torch.no_grad():
                rollouts = run_rollouts(policy, batch, pool, cfg, checker, tools_for=tools_for, scorer=scorer,
                                        seed=seed, tag=f"u{u}", on_done=counter)
            bar.note(f"(update {u + 1}: training)")
            t_roll = time.perf_counter() - t0
            rewards = [r.reward for r in rollouts]
            adv = group_advantages(rewards, [r.group for r in rollouts], eps=cfg.adv_eps)
            samples = []
            for r, a in zip(rollouts, adv.tolist()):
                if cfg.skip_zero_advantage and a == 0.0:
                    continue
                enc = encode_rollout(tokenizer, r, cfg.max_seq_len)
                if enc is not None:
                    samples.append(TrainSample(enc["input_ids"], enc["loss_mask"], a, group=r.group))
            t1 = time.perf_counter()
            stats = updater.update(samples, n_items=len(batch))
            t_upd = time.perf_counter() - t1
            gen_tokens = sum(s.completion_tokens for r in rollouts for s in r.new_steps)
            # Compute accounting: tokens of the sequences trained on, once per optimisation pass.
            train_tokens = sum(len(s.input_ids) for s in samples) * cfg.ppo_epochs
            rec = {"step": u, "epoch": u // per_epoch, "items": len(batch), "rollouts": len(rollouts),
                   "reward_mean": statistics.fmean(rewards) if rewards else 0.0,
                   "reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
                   "groups_with_spread": _spread_share(rollouts),
                   "reasons": reason_counts(rollouts), **stats,
                   "gen_tokens": gen_tokens, "rollout_seconds": round(t_roll, 3), "update_seconds": round(t_upd, 3),
                   "seconds": round(time.perf_counter() - t0, 3), "ablation": cfg.ablation_name(),
                   "train_tokens": train_tokens}
            if accelerator.is_main_process:
                append_jsonl(out / "rollouts.jsonl", [_rollout_record(u, r) for r in rollouts])
                append_jsonl(out / "log.jsonl", [rec])
            if sync is not None:
                sync.push(unwrapped)
            if (u + 1) % cfg.save_every == 0 or u + 1 == total:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    save_checkpoint(out, u + 1, unwrapped, tokenizer, optimizer,
                                    {"next_update": u + 1, "items": fingerprint, "total_updates": total},
                                    keep=cfg.keep_checkpoints)
            bar.advance(1)
        bar.note("")
    finally:
        bars.close()
        if own_pool:
            pool.close()
    if accelerator.is_main_process:
        final = unwrapped.merge_and_unload() if hasattr(unwrapped, "merge_and_unload") else unwrapped
        tmp = out / ".model.tmp"
        final.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if final_dir.exists():
            import shutil

            shutil.rmtree(final_dir)
        os.replace(tmp, final_dir)
    accelerator.wait_for_everyone()
    return final_dir

