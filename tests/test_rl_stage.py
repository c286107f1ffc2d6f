"""The RL stage end to end: prefix replay in the real sandbox, rewards, updates, logs, checkpoints, resume."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from score_distill.models.base import Completion
from score_distill.models.tiny import build_tiny_model
from score_distill.rl.config import RLConfig
from score_distill.rl.items import RLItem
from score_distill.sandbox import SandboxConfig, SandboxPool
from score_distill.stages.rl import run_rl_stage
from score_distill.trajectory import Step, Task, ToolCall

TASK = Task(id="t1", question="Find the secret number plus 3.", answer="43",
            tools=["python", "web_search", "final_answer_print"])
PREFIX = [
    Step(kind="plan", thought="Look the number up, then add 3."),
    Step(thought="search", code="r = web_search('secret')\nx = int(r)\nprint(x)", observation="40",
         tool_calls=[ToolCall(name="web_search", args=["secret"], result="40")]),
]
CHOSEN = Step(thought="add", code="y = x + 3\nprint(y)", observation="43", origin="teacher")
REJECTED = Step(thought="sub", code="y = x - 3\nprint(y)", observation="37")
ITEMS = [RLItem(id=f"i{n}", kind="key_step", task=TASK.model_copy(update={"id": f"t{n}"}), prefix=PREFIX,
                chosen=CHOSEN, rejected=REJECTED, step_index=2) for n in range(3)]

FIRST = {
    "teacher": "<thought>add three</thought>\n<code>\nz = x + 3\nprint(z)\n</code>",
    "mistake": "<thought>subtract</thought>\n<code>\ny = x - 3\nprint(y)\n</code>",
    "correct": "<thought>done</thought>\n<code>\nfinal_answer_print(x + 3)\n</code>",  # right only if x was replayed
    "other": "<thought>double</thought>\n<code>\nprint(x * 2)\n</code>",
}


class ScriptedPolicy:
    """Deterministic stand-in generator: picks a first step by a seeded draw, then answers 44 (wrong)."""

    name = "scripted"

    def generate(self, chats, params):
        out = []
        for i, chat in enumerate(chats):
            new_turns = sum(1 for m in chat if m["role"] == "assistant") - len(PREFIX)
            rng = random.Random(f"{params.seed}/{i}/{json.dumps(chat)}")
            if new_turns == 0:
                text = FIRST[rng.choice(sorted(FIRST))]
            else:
                text = "<thought>submit</thought>\n<code>\nfinal_answer_print(44)\n</code>"
            out.append(Completion(text=text, completion_tokens=10))
        return out


def no_live_search(task):
    def web_search(q):
        raise AssertionError("the prefix's search must be served from its recorded result")
    return {"web_search": web_search}


def scorer(task, answer):
    return float(answer is not None and answer.strip() == task.answer)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("rl_stage") / "tiny", seed=0)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(), max_workers=2) as p:
        yield p


def cfg(**kw):
    return RLConfig.cpu_preset(group_size=4, items_per_update=2, epochs=2, lr=1e-3, seed=3, **kw)


def _weights(d):
    return load_file(str(d / "model.safetensors"))


def test_stage_rewards_updates_and_resumes_exactly(tiny, pool, tmp_path):
    kw = dict(tools_for=no_live_search, scorer=scorer, pool=pool, rollout_policy=ScriptedPolicy())
    full = run_rl_stage(tiny, ITEMS, cfg(), tmp_path / "full", **kw)  # 2 epochs x ceil(3/2) = 4 updates
    log = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    reasons = {k: sum(r["reasons"][k] for r in log) for k in log[0]["reasons"]}
    # The scripted first steps produce every key-step case; "correct" proves the prefix state was replayed.
    for k in ("correct", "teacher_equivalent", "repeats_mistake", "other"):
        assert reasons[k] > 0, reasons
    rolls = [json.loads(x) for x in (tmp_path / "full" / "rollouts.jsonl").read_text().splitlines()]
    by_reason = {r["reason"]: r["reward"] for r in rolls}
    assert by_reason == {"correct": 1.0, "teacher_equivalent": 0.5, "repeats_mistake": 0.0, "other": 0.1}
    assert any(r["tokens"] > 0 and r["loss"] != 0 for r in log)
    for r in log:
        mine = [x["reward"] for x in rolls if x["step"] == r["step"]]
        assert len(mine) == r["rollouts"] == 4 * r["items"] and abs(r["reward_mean"] - sum(mine) / len(mine)) < 1e-9
        groups = {}
        for x in rolls:
            if x["step"] == r["step"]:
                groups.setdefault(x["group"], set()).add(x["reward"])
        assert r["groups_with_spread"] == sum(len(v) > 1 for v in groups.values()) / len(groups)
        # cpu_preset: one item per optimizer step; a group without spread is dropped, and so is its step.
        assert r["optimizer_steps"] == sum(len(v) > 1 for v in groups.values()) <= 2
        assert len(r["clip_frac_steps"]) == len(r["kl_steps"]) == r["optimizer_steps"]
        assert 0 <= r["clip_frac"] <= 1 and r["kl"] == 0.0
    assert any(r["optimizer_steps"] == 2 for r in log)
    w0, w1 = _weights(tiny), _weights(full)
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # the model was updated

    # Interrupted run: 2 updates, then the same call resumes to the end.
    part = tmp_path / "part"
    run_rl_stage(tiny, ITEMS, cfg(max_updates=2), part, **kw)
    assert (part / "checkpoints" / "step_2" / "state.json").exists()
    resumed = run_rl_stage(tiny, ITEMS, cfg(), part, **kw)
    rolls2 = [json.loads(x) for x in (part / "rollouts.jsonl").read_text().splitlines()]
    assert [(r["step"], r["item"]) for r in rolls2] == [(r["step"], r["item"]) for r in rolls]  # same item order
    w2 = _weights(resumed)
    assert all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)  # same weights as the uninterrupted run


def test_stage_refuses_resume_with_other_items(tiny, pool, tmp_path):
    kw = dict(tools_for=no_live_search, scorer=scorer, pool=pool, rollout_policy=ScriptedPolicy())
    run_rl_stage(tiny, ITEMS, cfg(max_updates=1), tmp_path, **kw)
    with pytest.raises(ValueError, match="other RL items"):
        run_rl_stage(tiny, ITEMS[:2], cfg(max_updates=2), tmp_path, **kw)


def test_stage_in_process_generation_with_lora(tiny, pool, tmp_path):
    """Default backend: the trained (LoRA) model itself generates; one real update end to end."""
    c = cfg(max_updates=1, lora={"r": 4, "alpha": 8}, max_new_tokens=24, max_steps=4, skip_zero_advantage=False)
    out = run_rl_stage(tiny, ITEMS, c, tmp_path, tools_for=no_live_search, scorer=scorer, pool=pool)
    rec = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert rec["rollouts"] == 8 and rec["gen_tokens"] > 0 and rec["tokens"] > 0
    assert (out / "config.json").exists() and not (out / "adapter_config.json").exists()  # merged


def test_stage_bar_counts_updates_with_the_rollouts_of_the_current_one(tiny, pool, tmp_path, monkeypatch):
    """The RL stage's one bar: total = the updates the stage does (max_updates, epochs and items decide), one
    step per update, resumed updates counted as done; the current update's rollouts in its description."""
    from score_distill.utils import progress

    monkeypatch.setenv("SCORE_DISTILL_PROGRESS", "1")
    notes = []
    note = progress._Bar.note

    def spy(bar, text):
        notes.append(text)
        note(bar, text)

    monkeypatch.setattr(progress._Bar, "note", spy)
    kw = dict(tools_for=no_live_search, scorer=scorer, pool=pool, rollout_policy=ScriptedPolicy())

    def bar_after(c, out):
        notes.clear()
        progress.begin_stage("score_rl")
        try:
            run_rl_stage(tiny, ITEMS, c, out, progress="score_rl RL updates", **kw)
            (task,) = progress._stage["progress"].tasks
            return task.description, task.completed, task.total
        finally:
            progress.end_stage()

    def rows(out):
        return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]

    # 3 items, 2 per update, 2 epochs: 4 updates in the schedule; max_updates=3 stops after 3.
    assert bar_after(cfg(max_updates=3), tmp_path / "a") == ("score_rl RL updates", 3, 3)
    assert len(rows(tmp_path / "a")) == 3
    for r in rows(tmp_path / "a"):  # every rollout of every update counted, then the update's training
        n, u = r["rollouts"], r["step"] + 1
        assert [t for t in notes if t.startswith(f"(update {u}:")] == [
            *(f"(update {u}: rollouts {k}/{n})" for k in range(n + 1)), f"(update {u}: training)"]
    assert notes[-1] == ""

    # Resumed after 3 of 4 updates: the bar's total is still the stage's 4 updates, 3 of them done before.
    assert bar_after(cfg(), tmp_path / "a") == ("score_rl RL updates", 4, 4)
    assert len(rows(tmp_path / "a")) == 4
    assert {t.split(":")[0] for t in notes if t} == {"(update 4"}
