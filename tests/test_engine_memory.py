"""A finished engine run leaves no keys/values behind: freed at once (no reference cycle waits for the garbage
collector) and handed back to the kernel even under the trainers' allocator setting (utils/malloc.py), so the
next run (another MPS chunk, the next RL update) does not grow its cache beside the last one's."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref

import pytest
from test_engine import policy, prompts  # noqa: F401 (a fixture)

from score_distill.engine import Request, RolloutEngine
from score_distill.models.base import SamplingParams
from score_distill.models.hf import _end_of_turn_ids


def test_the_cache_is_freed_without_the_garbage_collector(policy):  # noqa: F811
    engine = RolloutEngine(policy.model, policy.tokenizer, SamplingParams(temperature=0.0), max_rows=4,
                           eos_ids=_end_of_turn_ids(policy.tokenizer, policy.model))
    seen = []

    def on_turns(turns):
        seen.append(weakref.ref(engine.cache))
        return [None] * len(turns)

    gc.disable()
    try:
        engine.run([Request(p, 3, tag=i) for i, p in enumerate(prompts(policy))], on_turns)
        assert seen and all(ref() is None for ref in seen)
    finally:
        gc.enable()


_RUN_TWICE = """
import json, sys, torch
from score_distill.engine import Request, RolloutEngine
from score_distill.models.base import SamplingParams
from score_distill.models.hf import TransformersPolicy
from score_distill.models.tiny import build_tiny_model
from score_distill.utils.malloc import tune_malloc

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

assert tune_malloc()
torch.set_num_threads(1)
pol = TransformersPolicy.from_pretrained(build_tiny_model(sys.argv[1], layers=8, hidden=128, heads=4, kv_heads=4))
engine = RolloutEngine(pol.model, pol.tokenizer, SamplingParams(temperature=0.0), max_rows=16,
                       eos_ids=[pol.tokenizer.eos_token_id])
g = torch.Generator().manual_seed(0)
def run(n):  # 16 rows of n prompt ids: 8 layers x 16 rows x n x 1 KB of keys and values, in blocks under 32 MiB
    engine.run([Request(torch.randint(10, 400, (n,), generator=g).tolist(), 2, tag=i) for i in range(16)],
               lambda turns: [None] * len(turns))
run(64)  # the model's first forwards allocate their own
before = rss_mb()
run(1500)
print(json.dumps({"before": before, "after": rss_mb()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_finished_run_hands_its_cache_back_under_the_tuned_allocator(tmp_path, monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("SCORE_DISTILL_MALLOC", raising=False)
    out = subprocess.run([sys.executable, "-c", _RUN_TWICE, str(tmp_path / "m")], capture_output=True, text=True,
                         check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    # The run's cache alone is about 190 MB. With the cache<->layer cycle back, 193 MB stayed resident after the run;
    # without the trim, 309 MB.
    assert r["after"] - r["before"] < 40, r
