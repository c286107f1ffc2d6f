"""Token in, token out through the agent loop: the context of every turn is exactly the recorded ids,
and RL trains those same ids; MPS-style continuation starts from the original ids."""

from __future__ import annotations

import pytest

from score_distill.agent.loop import AgentConfig, EpisodeStart, run_episodes
from score_distill.models.base import SamplingParams
from score_distill.models.hf import TransformersPolicy
from score_distill.models.tiny import build_tiny_model
from score_distill.rl.items import RLItem
from score_distill.rl.rollout import Rollout, encode_rollout
from score_distill.tasks.registry import make_tasks
from score_distill.training.chat_tokenize import tokenize_chat
from score_distill.trajectory import Step, Trajectory, steps_to_messages


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return TransformersPolicy.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", seed=0),
                                              batch_size=3)


class Recorder:
    """Wraps the policy's engine factory to keep every turn's context as the engine fed it."""

    def __init__(self, policy):
        self.policy, self.turns = policy, []
        self.name, self.batch_size = policy.name, policy.batch_size
        self.chat_glue = policy.chat_glue

    def rollout_engine(self, params, stop, rows):
        engine = self.policy.rollout_engine(params, stop, rows)
        run = engine.run

        def recording_run(requests, on_turns, poll=None):
            def spy(turns):
                self.turns.extend(turns)
                return on_turns(turns)

            return run(requests, spy, poll)

        engine.run = recording_run
        return engine


def context_ids(traj: Trajectory, upto: int) -> list[int]:
    ids = list(traj.prompt_ids)
    for s in traj.steps[:upto]:
        ids += s.tokens.ids + s.tokens.after
    return ids


CFG = AgentConfig(max_steps=3, max_new_tokens=20, max_live_episodes=3,
                  sampling=SamplingParams(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, seed=3))


def test_every_turns_context_is_the_recorded_ids_and_rl_trains_them(policy, pool):
    rec = Recorder(policy)
    tasks = make_tasks("math", 4, 2, seed=0, split="eval")
    trajs = run_episodes(rec, [EpisodeStart(t, id=t.id) for t in tasks], pool, CFG, progress=None)
    by_task = {t.task.id: t for t in trajs}
    seen = 0
    for turn in rec.turns:
        traj = by_task[tasks[turn.tag].id]
        k = next(i for i, s in enumerate(traj.steps) if s.tokens.ids == turn.ids and s.tokens.sampled
                 and len(context_ids(traj, i)) == len(turn.context))
        assert turn.context == context_ids(traj, k)
        seen += 1
    assert seen == sum(len(t.steps) for t in trajs) >= 4
    for traj in trajs:
        for s in traj.steps:
            assert s.tokens.sampled and len(s.tokens.logprobs) == len(s.tokens.ids) == s.completion_tokens
        ro = Rollout(item=RLItem(id="i", kind="question_only", task=traj.task), group=0, trajectory=traj, n_prefix=0)
        enc = encode_rollout(policy.tokenizer, ro, max_seq_len=100_000)
        last = len(traj.steps) - 1
        assert enc["input_ids"] == context_ids(traj, last) + traj.steps[last].tokens.ids
        trained = [t for t, m in zip(enc["input_ids"], enc["loss_mask"]) if m]
        assert trained == [i for s in traj.steps for i in s.tokens.ids]
        assert [lp for lp, m in zip(enc["old_logprobs"], enc["loss_mask"]) if m] == \
               [lp for s in traj.steps for lp in s.tokens.logprobs]


def test_the_engine_gets_no_more_rows_than_episodes(policy, pool):
    """Its cache holds every row at the longest row's length: 2 episodes get 2 rows, not the policy's 3."""
    rec = Recorder(policy)
    rows = []
    make = rec.rollout_engine

    def spy(params, stop, n):
        rows.append(n)
        return make(params, stop, n)

    rec.rollout_engine = spy
    tasks = make_tasks("math", 2, 2, seed=1, split="eval")
    run_episodes(rec, [EpisodeStart(t, id=t.id) for t in tasks], pool, CFG.model_copy(update={"max_steps": 1}),
                 progress=None)
    assert rows == [2]


def test_a_continuation_starts_from_the_original_ids(policy, pool):
    """MPS: student prefix (its sampled ids, even where its text was cleaned up) + a teacher's step as text."""
    task = make_tasks("math", 1, 2, seed=1, split="eval")[0]
    first = run_episodes(policy, [EpisodeStart(task, id="a")], pool, CFG, progress=None)[0]
    assert len(first.steps) >= 2
    teacher = Step(thought="compute", code="x = 6 * 7\nprint(x)", origin="teacher")
    rec = Recorder(policy)
    start = EpisodeStart(task, prefix=first.steps[:1] + [teacher], execute_last=True, id="a")
    cont = run_episodes(rec, [start], pool, CFG, progress=None)[0]
    glue = policy.chat_glue()
    head = first.prompt_ids + first.steps[0].tokens.ids + first.steps[0].tokens.after
    assert rec.turns[0].context[: len(head)] == head
    assert cont.steps[1].tokens.ids == glue.encode(teacher.render()) and not cont.steps[1].tokens.sampled
    assert rec.turns[0].context == context_ids(cont, 2)
    # RL on this rollout trains only the new, sampled steps.
    ro = Rollout(item=RLItem(id="i", kind="question_only", task=task), group=0, trajectory=cont, n_prefix=2)
    enc = encode_rollout(policy.tokenizer, ro, max_seq_len=100_000)
    assert [t for t, m in zip(enc["input_ids"], enc["loss_mask"]) if m] == \
           [i for s in cont.steps[2:] for i in s.tokens.ids]


def test_glued_ids_equal_tokenizing_the_whole_chat(policy):
    """For turns given as text, prompt + turn + glue ids are what tokenizing the whole conversation gives
    (the model sees what SFT trained it on)."""
    task = make_tasks("math", 1, 2, seed=2, split="eval")[0]
    steps = [Step(kind="plan", thought="add them"), Step(thought="add", code="print(2 + 3)", observation="5\n")]
    glue = policy.chat_glue()
    ids = glue.prompt(steps_to_messages(task, []))
    for s in steps:
        turn = glue.encode(s.render())
        ids += turn + glue.after_turn(turn, s.render_observation())
    whole = policy.tokenizer.apply_chat_template(steps_to_messages(task, steps), tokenize=False,
                                                 add_generation_prompt=True)
    assert ids == policy.tokenizer(whole, add_special_tokens=False)["input_ids"]
    sft = tokenize_chat(policy.tokenizer, steps_to_messages(task, steps))["input_ids"]  # SFT's ids, same prefix
    assert ids[: len(sft)] == sft


def test_trajectory_files_keep_ids_and_read_old_records(policy, pool, tmp_path):
    from score_distill.utils.jsonl import read_jsonl, write_jsonl

    task = make_tasks("math", 1, 2, seed=3, split="eval")[0]
    traj = run_episodes(policy, [EpisodeStart(task, id="f")], pool, CFG, progress=None)[0]
    write_jsonl(tmp_path / "t.jsonl", [traj])
    back = read_jsonl(tmp_path / "t.jsonl", Trajectory)[0]
    assert back.prompt_ids == traj.prompt_ids
    assert [s.tokens.ids for s in back.steps] == [s.tokens.ids for s in traj.steps]
    assert all(s.tokens.logprobs is None for s in back.steps)  # in memory only: files stay small
    old = traj.model_dump(mode="json")
    old.pop("prompt_ids")
    for s in old["steps"]:
        s.pop("tokens")
    assert Trajectory.model_validate(old).steps[0].tokens is None
