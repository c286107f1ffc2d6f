"""Held-out episodes that do not depend on the training seed: evaluated once per study, not once per run.

The untrained student and the teacher are the same policy in every run of one horizon: no stage trains them, and
each episode samples from a generator seeded by (suite, sampling seed, task), and by the policy's name without
``eval.common_seeds``, never by the run. With the same held-out tasks and the same settings, their episodes in the
run of training seed 1 are those of seed 0. The untrained student is also the costliest policy to evaluate (it
writes every turn up to the token limit), so a study copies its files from a sibling run that has them instead of
decoding them again, and the record says so (``reused_episodes``). The key of a policy's files is everything its
episodes depend on; a sibling whose key differs (another held-out set after deduplication, another student) is not
used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from score_distill.utils.jsonl import write_json

SEED_FREE = ("student_init", "teacher")
KEYS_FILE = "seed_free_keys.json"  # in the held-out folder: {policy: key} of the complete files there
REUSED_FILE = "reused_episodes.json"  # in the held-out folder: {policy: the run folder the files came from}


def policy_key(cfg: Any, eval_dir: Path, policy: str) -> str:
    """What a seed-free policy's held-out episodes depend on: the tasks, the policy, how it is run and scored."""
    model = cfg.student if policy == "student_init" else cfg.teacher
    what = {"policy": policy,
            "tasks": hashlib.sha256((eval_dir / "tasks.jsonl").read_bytes()).hexdigest(),
            "model": model.model_dump(mode="json"),
            "agent": cfg.agent.model_dump(mode="json"),
            "sandbox": cfg.sandbox.model_dump(mode="json"),
            "eval": cfg.eval.model_dump(mode="json", exclude={"policies"})}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def _files(cfg: Any, policy: str, suites: list[str]) -> list[str]:
    """The result files a finished evaluation of ``policy`` holds (as the eval stage writes them: a deterministic
    teacher, the oracle, is run at the first sampling seed only)."""
    seeds = cfg.eval.seeds if policy != "teacher" or cfg.teacher.kind == "llm" else cfg.eval.seeds[:1]
    return [f"{suite}/seed{seed}.jsonl" for suite in suites for seed in seeds]


def _complete(policy_dir: Path, files: list[str]) -> bool:
    return all((policy_dir / f).exists() for f in files)


def record_keys(cfg: Any, eval_dir: Path, suites: list[str]) -> None:
    """Write the keys of the seed-free policies whose files in ``eval_dir`` are complete."""
    path = eval_dir / KEYS_FILE
    keys = json.loads(path.read_text()) if path.exists() else {}
    for policy in SEED_FREE:
        if _complete(eval_dir / policy, _files(cfg, policy, suites)):
            keys[policy] = policy_key(cfg, eval_dir, policy)
    write_json(path, keys)


def reuse(cfg: Any, eval_dir: Path, siblings: list[Path], policies: list[str], suites: list[str]) -> dict[str, str]:
    """Copy into ``eval_dir`` the files of every seed-free policy of ``policies`` that it lacks and a sibling run
    (its folder of the same name) has under the same key. Returns {policy: sibling run folder} of all reused."""
    path = eval_dir / REUSED_FILE
    reused = json.loads(path.read_text()) if path.exists() else {}
    for policy in (p for p in SEED_FREE if p in policies):
        mine, files = eval_dir / policy, _files(cfg, policy, suites)
        if any((mine / f).exists() for f in files):  # begun or done here: evaluation goes on from it
            continue
        key = policy_key(cfg, eval_dir, policy)
        for run in sorted(siblings):
            other = run / eval_dir.name
            keys_p = other / KEYS_FILE
            if not keys_p.exists() or json.loads(keys_p.read_text()).get(policy) != key:
                continue
            if not _complete(other / policy, files):
                continue
            for f in files:
                dest = mine / f
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_suffix(".tmp")
                shutil.copyfile(other / policy / f, tmp)
                os.replace(tmp, dest)  # whole or absent: evaluation treats an existing file as finished
            reused[policy] = run.name
            break
    if reused:
        write_json(path, reused)
    return reused
