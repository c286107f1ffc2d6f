"""TRL's ``SFTTrainer`` with the loss taken from the trained (assistant) tokens only.

Everything else is TRL's: the padding-free collator (``padding_free=True``: a batch is one row with
``position_ids`` restarting per sequence), the step/accumulation/``num_items_in_batch`` bookkeeping, logging,
checkpoints. Only ``compute_loss`` differs: it calls the forward installed by
:mod:`score_distill.training.trained_logprobs`, which keeps attention within each sequence and runs the LM
head on the trained positions only, on every device (TRL's own fused head does the latter on CUDA only).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from trl import SFTTrainer

from score_distill.training import trained_logprobs


class TrainedTokenSFTTrainer(SFTTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        trained_logprobs.install(self.model)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if isinstance(resume_from_checkpoint, str | Path):
            self._restore_token_counts(Path(resume_from_checkpoint))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _restore_token_counts(self, checkpoint: Path) -> None:
        """TRL keeps its running token counts in memory only: without this, a resumed run logs the tokens since
        the resume as the total (and the stage's one-line result and the report show them)."""
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        history = state.get("log_history", [])
        seen = state.get("num_input_tokens_seen")  # exact at the checkpoint's step; the log may lag a few steps
        self._total_train_tokens = int(seen) if seen else next(
            (int(e["num_tokens"]) for e in reversed(history) if "num_tokens" in e), 0)
        self._total_trained_tokens = next(
            (int(e["num_trained_tokens"]) for e in reversed(history) if "num_trained_tokens" in e), 0)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        keep = ("input_ids", "labels", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k",
                "max_length_q", "max_length_k", "seq_idx")
        out = model(**{k: v for k, v in inputs.items() if k in keep}, trained_logprobs=True, with_top1=True)
        n_local = out.log_probs.numel()
        # Same normalisation as TRL's: num_items_in_batch counts the trained labels of the whole accumulated
        # step on every process, and DDP averages gradients over processes.
        denom = n_local if num_items_in_batch is None else num_items_in_batch
        loss = -out.log_probs.sum() / torch.as_tensor(denom).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        n_valid = self.accelerator.gather_for_metrics(torch.tensor(n_local, device=loss.device)).sum()
        n_top1 = self.accelerator.gather_for_metrics(out.is_top1.sum().to(loss.device)).sum()
        self._metrics[mode]["mean_token_accuracy"].append((n_top1 / n_valid).item() if n_valid > 0 else 0.0)
        if mode == "train":
            ids = inputs["input_ids"]
            local = inputs["attention_mask"].sum() if "attention_mask" in inputs else torch.tensor(ids.numel())
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(local.to(loss.device)).sum())
            self._total_trained_tokens = getattr(self, "_total_trained_tokens", 0) + int(n_valid)
            # Cumulative counts of real (unpadded) and trained tokens, for throughput figures.
            self._metrics[mode]["num_trained_tokens"] = [self._total_trained_tokens]
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        if return_outputs:
            raise NotImplementedError("the trained-token loss builds no logits to return")
        return loss
