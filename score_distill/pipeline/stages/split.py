"""Stage ``split``: MPS records by task into the SCoRe-SFT and SCoRe-RL halves (:mod:`score_distill.stages.split`).
Writes RUN/split/{sft,rl}.jsonl."""

from __future__ import annotations

from typing import Any

from score_distill.config import RunConfig
from score_distill.stages.split import split_mps
from score_distill.trajectory import Trajectory
from score_distill.utils.jsonl import read_jsonl, write_jsonl


def run(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    records = read_jsonl(ctx.stage_dir("mps") / "trajectories.jsonl", Trajectory)
    sft, rl = split_mps(records, cfg.split, cfg.seed)
    write_jsonl(ctx.stage_dir("split") / "sft.jsonl", sft)
    write_jsonl(ctx.stage_dir("split") / "rl.jsonl", rl)
    return {"n_sft": len(sft), "n_rl": len(rl)}
