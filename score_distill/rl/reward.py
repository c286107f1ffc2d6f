"""The key-step reward of SCoRe-RL, with the reason behind every value.

For a rollout whose key step (the step at the corrected position k, i.e. the first new step when the
rollout starts from the verified prefix) is ``a_k``::

    correct final answer                  -> weights.correct            (1.0)  "correct"
    no final answer at all                -> weights.no_final_answer    (0.0)  "no_final_answer"
    a_k equivalent to the teacher's step  -> weights.teacher_equivalent (0.5)  "teacher_equivalent"
    a_k equivalent to the original mistake-> weights.repeats_mistake    (0.0)  "repeats_mistake"
    a_k itself submits a wrong answer     -> weights.answers_wrong      (0.0)  "answers_wrong"
    anything else                         -> weights.other              (0.1)  "other"

"No final answer" is checked before the key step, as in the released code (a rollout that never
calls final_answer_print gets 0): otherwise a policy could farm 0.5 by copying the teacher's step
and never finishing. ``key_step_credit_without_final_answer`` flips that order. Question-only items
and the sparse-reward ablation get the outcome reward only ("correct" / "wrong" / "no_final_answer").

The 0.1 rewards a key step that avoided the known mistake *and left the task open*; a key step that
itself calls final_answer_print with a wrong answer has not avoided anything: the episode ends
there, wrong, and the reference scores it 0. ``RewardWeights.wrong_answer_key_step_earns_other``
restores the earlier 0.1 for comparison with old runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from score_distill.rl.config import RewardWeights
from score_distill.rl.equivalence import EquivalenceChecker
from score_distill.rl.items import RLItem
from score_distill.trajectory import Step, Trajectory

REASONS = ("correct", "teacher_equivalent", "repeats_mistake", "other", "no_final_answer", "wrong", "answers_wrong")


@dataclass
class RewardResult:
    reward: float
    reason: str
    method: str = ""  # how equivalence was decided ("same_code", "judge", ...), empty for outcome-only


def key_step_of(item: RLItem, traj: Trajectory) -> Step | None:
    """The rollout's step at the corrected position (None when the rollout ended before it)."""
    if item.step_index is None or item.step_index >= len(traj.steps):
        return None
    return traj.steps[item.step_index]


def compute_rewards(
    items: list[RLItem],
    trajectories: list[Trajectory],
    weights: RewardWeights,
    checker: EquivalenceChecker,
    *,
    sparse: bool = False,
) -> list[RewardResult]:
    """One reward per (item, trajectory) pair; equivalence checks (and judge calls) are batched."""
    if len(items) != len(trajectories):
        raise ValueError(f"{len(items)} items for {len(trajectories)} trajectories")
    results: list[RewardResult | None] = [None] * len(items)
    pairs: list[tuple[int, Step]] = []  # rollouts whose key step must be compared
    for i, (item, traj) in enumerate(zip(items, trajectories)):
        finished = traj.final_answer is not None and traj.outcome != "error"
        if traj.outcome == "correct":
            results[i] = RewardResult(weights.correct, "correct")
            continue
        outcome_only = sparse or not item.has_key_step
        if outcome_only:
            results[i] = RewardResult(weights.wrong, "wrong") if finished else RewardResult(
                weights.no_final_answer, "no_final_answer")
            continue
        if not finished and not weights.key_step_credit_without_final_answer:
            results[i] = RewardResult(weights.no_final_answer, "no_final_answer")
            continue
        step = key_step_of(item, traj)
        if step is None:
            results[i] = RewardResult(weights.other if finished else weights.no_final_answer,
                                      "other" if finished else "no_final_answer")
            continue
        pairs.append((i, step))
    if pairs:
        q = [(items[i].task.question, s, items[i].chosen) for i, s in pairs]
        r = [(items[i].task.question, s, items[i].rejected) for i, s in pairs]
        verdicts = checker.check_many(q + r)  # one batch: one round of judge calls
        to_teacher, to_mistake = verdicts[: len(pairs)], verdicts[len(pairs):]
        for (i, step), vt, vm in zip(pairs, to_teacher, to_mistake):
            if vt.equivalent:
                results[i] = RewardResult(weights.teacher_equivalent, "teacher_equivalent", vt.method)
            elif vm.equivalent:
                results[i] = RewardResult(weights.repeats_mistake, "repeats_mistake", vm.method)
            elif step.final_answer is not None and not weights.wrong_answer_key_step_earns_other:
                # The key step ended the episode with a wrong answer (the outcome is not "correct").
                results[i] = RewardResult(weights.answers_wrong, "answers_wrong", vt.method)
            else:
                results[i] = RewardResult(weights.other, "other", vt.method)
    return [r for r in results if r is not None]


def reason_counts(results: list) -> dict[str, int]:
    """Counts of every reason (anything with a ``.reason``: RewardResult or Rollout), zeros included."""
    c = Counter(r.reason for r in results)
    return {k: c.get(k, 0) for k in REASONS}
