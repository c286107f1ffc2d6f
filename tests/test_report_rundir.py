"""A realistic run directory for the report tests, written the way the pipeline writes it.

``make_run_dir`` builds summary.json, mps/trajectories.jsonl and score_rl/log.jsonl with consistent
numbers: valid corrections' teacher steps stand in the final trajectory at their index, invalid
ones were cut by a later correction that went back before them, the MPS histograms in the summary
are counted here independently of the report's own fallback code. One trajectory is hostile
(markup in the question, a thought, the code and the observation).
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

from score_distill.trajectory import Correction, Step, Task, Trajectory, Usage
from score_distill.utils.jsonl import append_jsonl, write_json

HOSTILE_THOUGHT = 'Let me check. <script>alert(1)</script><img src=x onerror="document.body.dataset.pwned=1">'
HOSTILE_CODE = 'print("</script><script>document.body.dataset.pwned=2</script>")'
HOSTILE_OBS = "<!-- </script><svg onload=\"document.body.dataset.pwned=3\"> &amp; &lt;"
HOSTILE_QUESTION = "What is 1+1? <b>bold</b></textarea><script>document.body.dataset.pwned=4</script>"

# (question, answer, plan, wrong thought, wrong code, wrong obs, good thought, good code, good obs)
TEMPLATES = [
    ("Find the remainder when $2^{100}$ is divided by 7.", "2",
     "Powers of 2 mod 7 cycle with period 3; reduce the exponent mod 3, or just compute with modular pow.",
     "I will compute 2^100 and take the remainder.", "print(2**100 % 6)", "4\n",
     "Use Python's three-argument pow for the modular power.", "r = pow(2, 100, 7)\nprint(r)", "2\n"),
    ("How many positive divisors does 3600 have?", "45",
     "Factor 3600 into primes, then multiply (exponent + 1) over the primes.",
     "Count divisors by trial division up to the square root.",
     "n = 3600\nprint(sum(1 for d in range(1, int(n**0.5)) if n % d == 0))", "22\n",
     "Factor with sympy and use the divisor-count formula.",
     "import sympy\nf = sympy.factorint(3600)\nprint(f, sympy.divisor_count(3600))", "{2: 4, 3: 2, 5: 2} 45\n"),
    ("Let $f(x)=x^2-5x+6$. What is the sum of the squares of its roots?", "13",
     "Use Vieta: r1+r2 = 5 and r1*r2 = 6, so r1^2 + r2^2 = (r1+r2)^2 - 2 r1 r2.",
     "Sum of squares is (sum)^2 plus twice the product.", "s, p = 5, 6\nprint(s**2 + 2*p)", "37\n",
     "Sum of squares is (sum)^2 minus twice the product, by Vieta.", "s, p = 5, 6\nprint(s**2 - 2*p)", "13\n"),
    ("What is the least common multiple of 12, 18 and 30?", "180",
     "The LCM is the product of the highest prime powers appearing in the three numbers.",
     "Multiply the numbers and divide by their gcd.", "import math\nprint(12*18*30 // math.gcd(12, math.gcd(18, 30)))",
     "1080\n", "Fold math.lcm over the numbers.", "import math\nprint(math.lcm(12, 18, 30))", "180\n"),
]

SUITES = ["math@H4", "math@H8", "search@H4"]
# success per (policy, suite); teacher best on search@H4, score_rl best on the math suites (the paper's shape)
LEVELS = {
    "teacher": [0.80, 0.72, 0.66],
    "student_init": [0.18, 0.09, 0.12],
    "bc_init": [0.41, 0.30, 0.35],
    "bc_baseline": [0.52, 0.38, 0.44],
    "score_sft": [0.63, 0.55, 0.50],
    "score_rl": [0.83, 0.76, 0.61],
}


def _step(kind: str, thought: str, code: str = "", obs: str = "", origin: str = "student",
          final: str | None = None) -> Step:
    return Step(kind=kind, thought=thought, code=code, observation=obs if kind == "action" else "None",
                origin=origin, final_answer=final, prompt_tokens=300, completion_tokens=60)


def _final_step(answer: str, origin: str = "student") -> Step:
    return _step("action", "The result is verified; submit it.", f'final_answer_print("\\\\boxed{{{answer}}}")',
                 f"\\boxed{{{answer}}}\n", origin, final=f"\\boxed{{{answer}}}")


def make_trajectory(i: int, pattern: str, hostile: bool = False) -> Trajectory:
    q, ans, plan, wt, wc, wo, gt, gc, go = TEMPLATES[i % len(TEMPLATES)]
    if hostile:
        q, wt, wc, wo = HOSTILE_QUESTION, HOSTILE_THOUGHT, HOSTILE_CODE, HOSTILE_OBS
    task = Task(id=f"math-{i:04d}", question=q, answer=ans, source="math", meta={"horizon": 4})
    p = _step("plan", plan)
    wrong = _step("action", wt, wc, wo)
    good = _step("action", gt, gc, go)
    usage = Usage(calls=2, prompt_tokens=1800, completion_tokens=240, seconds=3.1)
    corr, steps, hard = [], [], False
    outcome, final = "correct", f"\\boxed{{{ans}}}"
    if pattern == "solo":
        steps = [p, good, _final_step(ans)]
    elif pattern == "one":  # wrong at step 1, teacher step 1, student continues
        chosen = good.model_copy(update={"origin": "teacher"})
        corr = [Correction(step_index=1, prefix=[p], chosen=chosen, rejected=wrong, teacher_usage=usage,
                           analysis=f"Step 1 is the first critical error: {wt}", suggestion=f"Instead: {gt}")]
        steps = [p, chosen, _final_step(ans)]
    elif pattern == "two":  # first correction at step 2, a later one goes back to step 1 and invalidates it
        bad_final = _step("action", "Submit.", 'final_answer_print("0")', "0\n", final="0")
        chosen2 = _step("action", "Check the intermediate value before submitting.", "print(r)", "1\n", "teacher")
        chosen1 = good.model_copy(update={"origin": "teacher"})
        corr = [
            Correction(step_index=2, prefix=[p, wrong], chosen=chosen2, rejected=bad_final, valid=False,
                       analysis="The answer was submitted without checking.", teacher_usage=usage),
            Correction(step_index=1, prefix=[p], chosen=chosen1, rejected=wrong, teacher_usage=usage,
                       analysis=f"The real error is earlier, in step 1: {wt}"),
        ]
        steps = [p, chosen1, _final_step(ans)]
    elif pattern == "hard":
        steps = [p, wrong, _step("action", "Submit.", 'final_answer_print("0")', "0\n", final="0")]
        hard, outcome, final = True, "wrong", "0"
    elif pattern == "failed":
        # right first step, wrong second one; the teacher's step 2 did not save it
        chosen = _step("action", "Double-check the value with a second method.", "print(r, 2 * r)", "2 4\n", "teacher")
        corr = [Correction(step_index=2, prefix=[p, good], chosen=chosen, rejected=wrong, teacher_usage=usage,
                           analysis="Step 2 used the wrong formula.")]
        steps = [p, good, chosen, _step("action", "Submit.", 'final_answer_print("7")', "7\n", final="7")]
        outcome, final = "wrong", "7"
    else:
        raise ValueError(pattern)
    if hostile:  # keep the hostile student step visible in the final trajectory too
        steps = [steps[0], wrong] + steps[1:]
        corr = []
    return Trajectory(id=f"traj-{i:04d}", task=task, steps=steps, final_answer=final, outcome=outcome,
                      score=1.0 if outcome == "correct" else 0.0, corrections=corr, hard_to_teach=hard,
                      policy="bc_init", teacher_usage=usage if corr else Usage())


PATTERNS = ["solo", "one", "solo", "two", "hard", "failed"]


def make_trajectories(n: int) -> list[Trajectory]:
    trajs = [make_trajectory(i, PATTERNS[i % len(PATTERNS)]) for i in range(n)]
    trajs.append(make_trajectory(n, "solo", hostile=True))
    return trajs


def expected_mps(trajs: list[Trajectory]) -> dict:
    hist = {"0": 0, "1": 0, "2": 0, "3+": 0}
    first: dict[str, int] = {}
    for t in trajs:
        if t.corrections:
            k = str(min(c.step_index for c in t.corrections))
            first[k] = first.get(k, 0) + 1
        if t.correct and not t.hard_to_teach:
            hist[str(len(t.corrections))] += 1
    return {"n_tasks": len(trajs), "corrections_hist": hist,
            "hard_to_teach": sum(t.hard_to_teach for t in trajs),
            "failed": sum(not t.correct and not t.hard_to_teach for t in trajs), "first_error_hist": first,
            "teacher_tokens_per_retained": 2040.0, "bc_teacher_tokens_per_retained": 5630.0}


def make_summary(trajs: list[Trajectory] | None, seed: int = 0) -> dict:
    rng = random.Random(seed)
    policies = {}
    for pol, levels in LEVELS.items():
        policies[pol] = {}
        for suite, m in zip(SUITES, levels):
            per_seed = [min(1.0, max(0.0, round(m + rng.uniform(-0.03, 0.03), 3))) for _ in range(3)]
            policies[pol][suite] = {"success_mean": statistics.fmean(per_seed),
                                    "success_std": statistics.pstdev(per_seed), "per_seed": per_seed,
                                    "mean_steps": 3.2 + rng.random(),
                                    "format_error_rate": 0.02 + 0.1 * rng.random(), "n_tasks": 50}
    summary = {
        "run": {"name": "cpu-smoke <demo>", "created": "2026-03-02T14:05:00Z", "config_path": "configs/cpu_smoke.yaml",
                "seconds": 5230.4, "machine": {"host": "ci-runner", "cpu": "2 cores", "torch": "2.13.0+cpu"}},
        "policies": policies,
        "teacher_tokens": {
            "bc_init": {"calls": 120, "prompt_tokens": 240000, "completion_tokens": 96000, "retained": 60,
                        "per_retained": 5600.0},
            "mps": {"calls": 410, "prompt_tokens": 700000, "completion_tokens": 52000, "retained": 368,
                    "per_retained": 2043.5},
        },
        "stages": {"bc_init": {"seconds": 610.2, "status": "done"}, "mps": {"seconds": 2400.0, "status": "done"},
                   "score_sft": {"seconds": 900.5, "status": "done"}, "score_rl": {"seconds": 1300.1, "status": "done"},
                   "eval": {"seconds": 19.6, "status": "done"}},
    }
    if trajs is not None:
        summary["mps"] = expected_mps(trajs)
    return summary


def make_rl_log(n: int = 24, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for step in range(n):
        frac = step / max(1, n - 1)
        correct = int(16 * (0.2 + 0.5 * frac) + rng.randint(-1, 1))
        teacher = rng.randint(2, 5)
        repeat = max(0, int(6 * (1 - frac)) + rng.randint(0, 1))
        other = max(0, 64 - correct - teacher - repeat - 4)
        reasons = {"correct": correct, "teacher_step": teacher, "repeated_mistake": repeat, "avoided_mistake": other,
                   "no_final_answer": 4}
        rewards = [1.0] * correct + [0.5] * teacher + [0.0] * repeat + [0.1] * other + [0.0] * 4
        out.append({"step": step, "reward_mean": statistics.fmean(rewards), "reward_std": statistics.pstdev(rewards),
                    "reasons": reasons, "loss": 0.05 * rng.uniform(-1, 1), "kl": 0.001 * step,
                    "seconds": 40 + rng.random()})
    return out


def make_run_dir(root: Path, *, n_trajectories: int = 24, with_rl: bool = True, with_summary: bool = True,
                 with_mps_in_summary: bool = True) -> Path:
    run = Path(root)
    run.mkdir(parents=True, exist_ok=True)
    trajs = make_trajectories(n_trajectories) if n_trajectories else None
    if trajs:
        append_jsonl(run / "mps" / "trajectories.jsonl", trajs)
    if with_summary:
        write_json(run / "summary.json", make_summary(trajs if with_mps_in_summary else None))
    if with_rl:
        append_jsonl(run / "score_rl" / "log.jsonl", make_rl_log())
    return run


# The builder must itself honour the contract it claims to follow.
def test_fixture_trajectories_follow_the_correction_contract(tmp_path):
    from score_distill.utils.jsonl import read_jsonl

    run = make_run_dir(tmp_path / "run")
    trajs = read_jsonl(run / "mps" / "trajectories.jsonl", Trajectory)
    assert len(trajs) == 25 and len({t.id for t in trajs}) == 25
    for t in trajs:
        for c in t.corrections:
            assert c.prefix == t.steps[: c.step_index] or not c.valid
            if c.valid:
                assert t.steps[c.step_index] == c.chosen and c.chosen.origin == "teacher"
            else:  # a later correction went back before it
                assert any(d.step_index < c.step_index for d in t.corrections if d.valid)
        assert (t.final_answer is not None) == any(s.final_answer is not None for s in t.steps)
    assert sum(bool(t.corrections) for t in trajs) == 12 and sum(t.hard_to_teach for t in trajs) == 4
