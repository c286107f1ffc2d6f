"""The distillation study (``score-distill compare``; benchmarks/distillation_study.py drives the same code) end to
end on the tiny preset: every method trained and evaluated as a pipeline stage, compute recorded and matched,
task-level comparisons, the plots, and --report-only reading the same figures back without decoding."""

from __future__ import annotations

import json
import shutil

import pytest

from score_distill.utils.jsonl import read_jsonl


@pytest.mark.slow
@pytest.mark.timeout(2400)  # ten policies trained and evaluated three times over, on a shared CPU
def test_study_runs_every_method_and_reports_again_from_disk(tmp_path, capsys, benchmark_script):
    study = benchmark_script("distillation_study")
    out = tmp_path / "study"
    args = ["--preset", "tiny", "--horizons", "2", "--seeds", "0", "--out", str(out),
            "tasks.suites=[math]", "tasks.n_train=6", "tasks.n_eval=2"]
    assert study.main(args) == 0
    first = json.loads((out / "study.json").read_text())
    (run,) = first["runs"]
    assert set(run["results"]) == set(study.METHODS)
    for method in study.METHODS:
        m = run["results"][method]["math@H2"]
        assert 0.0 <= m["progress"] <= 1.0 and m["n_tasks"] == 2
    assert run["results"]["teacher"]["math@H2"]["progress"] == 1.0
    # Every episode's score is kept, keyed by sampling seed and task, for the paired comparisons.
    eval_ids = {json.loads(line)["id"] for line in (out / "H2-seed0" / "tasks" / "eval.jsonl").open()}
    assert set(run["episodes"]) == set(study.METHODS)
    assert set(run["episodes"]["teacher"]["math@H2"]) == {f"seed0/{i}" for i in eval_ids}
    assert set(run["episodes"]["teacher"]["math@H2"].values()) == {1.0}
    comparisons = first["comparisons"]
    assert comparisons == first["aggregate"]["comparisons"]
    assert {(c["a"], c["b"]) for c in comparisons} == set(study.PAIRS) and {c["horizon"] for c in comparisons} == {2}
    for c in comparisons:
        assert c["unit"] == "task" and c["n_tasks"] == 2 and c["better"] + c["worse"] + c["same"] == 2
        assert 0 <= c["p_value"] <= 1 and len(c["diff_ci95"]) == 2 and c["runs"] == 1
    assert {"bc_init", "bc_baseline", "mps", "score_sft", "score_rl", "rl_long_horizon", "rl_sparse_reward",
            "bc_equal_budget", "bc_continued", "eval"} <= set(run["stage_seconds"])
    # Training compute per policy, and the compute-matched controls (on by default).
    comp = run["compute"]
    chain = comp["score_sft"]["sft_steps"]
    assert chain == comp["bc_init"]["sft_steps"] + json.loads(
        (out / "H2-seed0" / "score_sft" / "stage.json").read_text())["steps"] > comp["bc_init"]["sft_steps"] > 0
    assert comp["bc_baseline"]["sft_steps"] == comp["bc_equal_budget"]["sft_steps"] == chain
    assert comp["bc_continued"]["sft_steps"] == chain and comp["bc_continued"]["rl_updates"] == 0
    for arm in ("score_rl", "rl_sparse_reward", "rl_long_horizon"):  # RL's optimizer steps, read from its log
        log = read_jsonl(out / "H2-seed0" / arm / "log.jsonl")
        assert comp[arm]["sft_steps"] == chain and comp[arm]["rl_updates"] == sum(r["optimizer_steps"] for r in log)
    assert comp["student_init"] == {"sft_steps": 0, "sft_tokens": 0, "rl_updates": 0, "rl_tokens": 0}
    assert run["matched"]["bc_baseline"]["steps"] == chain and run["matched"]["bc_continued"]["same_batch"]
    eq = run["equal_budget"]
    assert eq["spent_tokens"] <= eq["budget_tokens"]
    # SCoRe's budget (a tiny student needs every correction) buys more than the baseline's 6 tasks: BC at
    # equal budget gets further tasks of the same stream, solved by the teacher, up to the budget.
    assert eq["beyond_the_baseline"] > 0 and eq["trajectories"] == 6 + eq["beyond_the_baseline"]
    extra = out / "H2-seed0" / "bc_equal_budget" / "extra_teacher_trajectories.jsonl"
    train_ids = {json.loads(line)["id"] for line in (out / "H2-seed0" / "tasks" / "train.jsonl").open()}
    extra_ids = [json.loads(line)["task"]["id"] for line in extra.open()]
    assert extra_ids and not set(extra_ids) & (train_ids | eval_ids)
    for png in ("success_vs_horizon.png", "progress_vs_horizon.png", "success_vs_teacher_tokens.png"):
        assert (out / png).stat().st_size > 1000
    assert len(first["targets"]) == 4
    report = capsys.readouterr().out
    assert "key steps right before the first critical error" in report
    assert "H=2 score_rl vs bc_baseline" in report.split("paired over distinct held-out tasks")[1]
    matched = report.split("what is and is not matched")[1]
    assert f"bc_baseline SFT steps {chain} vs BC init + SCoRe-SFT {chain}: matched" in matched
    assert "SCoRe-RL adds" in matched and "no BC arm matches" in matched
    per_run = report.split("success per run")[1].split("\n\n")[0].splitlines()
    assert per_run[1].split() == ["method", "H=2/s0"]
    rows = {line.split()[0]: line.split()[1:] for line in per_run[2:]}
    assert set(rows) == set(study.METHODS) and rows["teacher"] == ["1.000"]

    # Reading back: same figures, nothing decoded or trained (no model folder is touched).
    models = sorted(out.glob("H2-seed0/*/train/model/model.safetensors"))
    mtimes = [p.stat().st_mtime for p in models]
    assert study.main([*args, "--report-only"]) == 0
    again = json.loads((out / "study.json").read_text())
    assert again["runs"][0]["results"] == run["results"]
    assert again["aggregate"] == first["aggregate"]
    assert [p.stat().st_mtime for p in models] == mtimes
    # A horizon not run yet is left out of a report, not an error.
    assert study.main(["--preset", "tiny", "--horizons", "2,4", "--seeds", "0", "--out", str(out), "--report-only",
                       *args[8:]]) == 0
    assert [r["h"] for r in json.loads((out / "study.json").read_text())["runs"]] == [2]
    assert run["setup"]["preset"] == "tiny" and run["recorded"]["machine"] and run["recorded"]["created"]
    # One command, one entry, though the study runs the pipeline's stages in several calls.
    (cmd,) = run["recorded"]["history"]
    assert cmd["command"] == run["recorded"]["command"] and cmd["created"] == run["recorded"]["created"]

    # Another session's study of the same setup (here: this run relabelled H=4) aggregates with this one;
    # its copy of a (H, seed) evaluated here is left out, not double-counted.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"runs": [{**run, "h": 4}, run]}))
    assert study.main([*args, "--report-only", "--merge", str(other)]) == 0
    merged = json.loads((out / "study.json").read_text())
    assert [(r["h"], r.get("merged_from")) for r in merged["runs"]] == [(2, None), (4, str(other))]
    assert set(merged["aggregate"]["success"]["teacher"]) == {"2", "4"}

    # A held-out set of another stream re-tests every trained policy without training anything again.
    own_record = (out / "study.json").read_bytes()
    assert study.main([*args, "--eval-n", "3", "--eval-seed", "7000"]) == 0
    assert (out / "study.json").read_bytes() == own_record  # the wider set's record sits beside it
    assert (out / "eval-s7000-n3_success_vs_horizon.png").exists()
    (wide,) = json.loads((out / "eval-s7000-n3_study.json").read_text())["runs"]
    assert wide["held_out"] == {"dir": "eval-s7000-n3", "n_tasks": {"math@H2": 3}}
    assert set(wide["results"]) == set(study.METHODS) and wide["setup"]["eval_n"] == 3
    assert [p.stat().st_mtime for p in models] == mtimes
    wide_ids = {json.loads(line)["id"] for line in (out / "H2-seed0" / "eval-s7000-n3" / "tasks.jsonl").open()}
    assert len(wide_ids) == 3 and not wide_ids & (train_ids | eval_ids | set(extra_ids))
    assert study.main([*args, "--report-only", "--eval-n", "3", "--eval-seed", "7000"]) == 0
    assert json.loads((out / "eval-s7000-n3_study.json").read_text())["runs"][0]["results"] == wide["results"]
    with pytest.raises(SystemExit):
        study.main([*args, "--eval-seed", "7000"])

    # A study in pieces: another session trains and evaluates only some methods (the baseline's training is
    # skipped: nothing named needs it), and --merge completes the (H, seed) from the first record.
    part = tmp_path / "part"
    parts = [*args[:7], str(part), *args[8:], "--methods", "score_sft,bc_equal_budget", "--merge",
             str(out / "first.json")]
    (out / "first.json").write_text(json.dumps(first))
    assert study.main(parts) == 0
    (piece,) = json.loads((part / "study.json").read_text())["runs"]
    assert not (part / "H2-seed0" / "bc_baseline" / "train").exists()
    assert not (part / "H2-seed0" / "rl_long_horizon").exists() and not (part / "H2-seed0" / "score_rl").exists()
    assert json.loads((part / "H2-seed0" / "eval" / "eval_seconds.json").read_text()).keys() == {
        "score_sft", "bc_equal_budget"}
    assert set(piece["results"]) == set(study.METHODS)
    assert set(piece["merged_policies"]) == set(study.METHODS) - {"score_sft", "bc_equal_budget"}
    assert piece["results"]["bc_baseline"] == run["results"]["bc_baseline"]
    assert piece["teacher_tokens"]["bc_baseline"] == run["teacher_tokens"]["bc_baseline"]
    # Equal-budget BC had the teacher solve the baseline's tasks itself, the same trajectories as the first run.
    assert piece["equal_budget"] == run["equal_budget"]
    with pytest.raises(SystemExit):
        study.main([*parts, "--methods", "score_sft,bc"])
    # A later piece that names the BC baseline trains it, though the first piece marked its stage skipped,
    # and the finished eval stage scores it (its results lacked it).
    assert study.main([*parts[:-4], "--methods", "bc_baseline", "--merge", str(out / "first.json")]) == 0
    assert json.loads((part / "H2-seed0" / "bc_baseline" / "stage.json").read_text())["trained"]
    (piece,) = json.loads((part / "study.json").read_text())["runs"]
    assert "bc_baseline" not in piece["merged_policies"] and "bc_baseline" in piece["eval_seconds"]


def test_targets_are_judged_on_the_figures_given(benchmark_script):
    study = benchmark_script("distillation_study")

    def agg(success: dict[str, dict[int, float]], cost: dict[int, tuple[float, float]]):
        return {"success": {m: {h: {"mean": v} for h, v in by_h.items()} for m, by_h in success.items()},
                "cost": {h: {"bc_per_retained": bc, "mps_per_retained": mps, "mps_over_bc": mps / bc}
                         for h, (bc, mps) in cost.items()}}

    good = agg({"teacher": {2: 1.0, 4: 1.0}, "student_init": {2: 0.2, 4: 0.1}, "score_rl": {2: 0.7, 4: 0.95},
                "bc_baseline": {2: 0.6, 4: 0.5}, "bc_equal_budget": {2: 0.5, 4: 0.4}},
               {2: (900.0, 250.0), 4: (1800.0, 500.0)})
    assert [ok for _, ok, _ in study.targets(good)] == [True, True, True, True]
    # At H=2 BC at equal budget gains 0.4 and SCoRe nothing: the target is missed even if H=4 meets it.
    bad = agg({"teacher": {2: 1.0, 4: 1.0}, "student_init": {2: 0.0, 4: 0.0}, "score_rl": {2: 0.0, 4: 0.5},
               "bc_baseline": {2: 0.0, 4: 0.0}, "bc_equal_budget": {2: 0.4, 4: 0.1}}, {2: (959.0, 3102.0)})
    names = [(name, ok) for name, ok, _ in study.targets(bad)]
    assert names[0][1] is False and names[1][1] is False and names[2][1] is True and names[3][1] is False
    # Nothing measured: every target is open (None), not met.
    assert [ok for _, ok, _ in study.targets(agg({}, {}))] == [None, None, None, None]


def test_mps_cost_says_how_often_the_student_must_solve_alone(benchmark_script):
    study = benchmark_script("distillation_study")
    # H=4 seed 0 of study_cpu_v2 (docs/benchmarks.md): 70 tasks, 17 solved alone, all retained.
    run = {"mps": {"n_tasks": 70, "status": {"solved_alone": 17, "corrected": 53}, "retained": 70,
                   "teacher_tokens": 95643},
           "teacher_tokens": {"bc_baseline": {"per_retained": 1960.15625}}}
    got = study.mps_cost(run)
    assert got["solved_alone"] == pytest.approx(17 / 70)
    assert got["helped_over_bc"] == pytest.approx(95643 / 53 / 1960.15625)
    assert got["break_even_solved_alone"] == pytest.approx(0.638, abs=1e-3)

    def ratio(a: float, helped: float, kept: float, bc: float) -> float:  # MPS per retained / BC per retained
        return (1 - a) * helped / (bc * (a + (1 - a) * kept))

    # The measured ratio is what the decomposition gives at the measured share; at the break-even share, 1/3.
    assert ratio(17 / 70, 95643 / 53, 1.0, 1960.15625) == pytest.approx(95643 / 70 / 1960.15625)
    assert ratio(got["break_even_solved_alone"], 95643 / 53, 1.0, 1960.15625) == pytest.approx(1 / 3)
    # Some helped tasks lost (not retained): more must be solved alone.
    lossy = study.mps_cost({**run, "mps": {**run["mps"], "retained": 60}})
    assert lossy["break_even_solved_alone"] > got["break_even_solved_alone"]
    assert ratio(lossy["break_even_solved_alone"], 95643 / 53, 43 / 53, 1960.15625) == pytest.approx(1 / 3)
    # No helped task retained: the cost of a helped task is measured, the break-even is not defined.
    none_kept = study.mps_cost({**run, "mps": {**run["mps"], "retained": 17}})
    assert none_kept["helped_over_bc"] == got["helped_over_bc"] and none_kept["break_even_solved_alone"] is None
    # Figures missing: no claim.
    assert study.mps_cost({"mps": run["mps"], "teacher_tokens": {}}) is None
    assert study.mps_cost({**run, "mps": {**run["mps"], "status": {"solved_alone": 70}}}) is None


def test_the_cost_ratio_pairs_runs_that_have_both_figures(benchmark_script):
    study = benchmark_script("distillation_study")

    def run(seed, bc, mps):
        tokens = {"mps": {"per_retained": mps}} | ({"bc_baseline": {"per_retained": bc}} if bc else {})
        return {"h": 4, "seed": seed, "results": {}, "teacher_tokens": tokens, "mps": {}}

    # Seed 1's BC baseline is not trained yet (a study run in pieces): its MPS figure stays out of the ratio.
    cost = study.aggregate([run(0, 2000.0, 1400.0), run(1, None, 1800.0)])["cost"][4]
    assert (cost["bc_per_retained"], cost["mps_per_retained"]) == (2000.0, 1400.0)
    cost = study.aggregate([run(0, 2000.0, 1400.0), run(1, 1000.0, 1800.0)])["cost"][4]
    assert (cost["bc_per_retained"], cost["mps_per_retained"]) == (1500.0, 1600.0)
    assert (cost["mps_over_bc"], cost["ratio_runs"]) == (pytest.approx(1600 / 1500), 2)
    # No run has both (BC at seed 0, MPS at seed 1 only): the means are shown, no ratio, the target unmeasured.
    agg = study.aggregate([run(0, 2000.0, None), run(1, None, 1800.0)])
    assert (agg["cost"][4]["bc_per_retained"], agg["cost"][4]["mps_per_retained"]) == (2000.0, 1800.0)
    assert agg["cost"][4]["mps_over_bc"] is None
    assert [ok for name, ok, _ in study.targets(agg) if name.startswith("MPS")] == [None]


def test_comparisons_are_over_distinct_tasks(benchmark_script):
    study = benchmark_script("distillation_study")

    def run(h, rl, bc, seeds=(0,)):
        def eps(xs):
            return {"math@H2": {f"seed{s}/t{i}": x for s in seeds for i, x in enumerate(xs)}}

        return {"h": h, "episodes": {"score_rl": eps(rl), "bc_baseline": eps(bc)}}

    # Two training seeds of one H, two sampling seeds each: 20 episode pairs, but 5 tasks.
    runs = [run(2, [1, 1, 1, 0, 1], [0, 0, 0, 0, 1], seeds=(0, 1)), run(2, [1, 1, 1, 0.5, 0], [0, 0, 1, 0.25, 0]),
            {"h": 2, "results": {}},  # a record from before episodes were kept: left out, not an error
            run(4, [1, 0], [0, 1])]
    got = {(c["horizon"], c["a"], c["b"]): c for c in study.comparisons(runs)}
    c = got[(2, "score_rl", "bc_baseline")]
    # Per task (mean over seeds and runs): t0 1 vs 0, t1 1 vs 0, t2 1 vs 1/3, t3 1/6 vs 1/12, t4 2/3 vs 2/3.
    assert (c["n_tasks"], c["better"], c["worse"], c["same"], c["runs"]) == (5, 4, 0, 1, 2)
    assert c["p_value"] == pytest.approx(2 / 2**4)  # over the 4 tasks that differ, not the episodes
    assert c["diff_ci95"][0] > 0 and c["unit"] == "task"
    assert got[(4, "score_rl", "bc_baseline")]["p_value"] == pytest.approx(1.0)
    # A pair with a method nobody evaluated is not reported.
    assert (2, "score_rl", "score_sft") not in got


def test_merge_refuses_runs_of_another_setup(tmp_path, benchmark_script):
    study = benchmark_script("distillation_study")
    want = study.setup("default", None, ["tasks.n_train=8"])
    mine = {"h": 2, "seed": 0, "setup": want}
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"runs": [{"h": 2, "seed": 1, "setup": want}, {"h": 2, "seed": 0, "setup": want}]}))
    assert [(r["seed"], "merged_from" in r) for r in study.merge_runs([mine], [str(f)], want)] == [(0, False),
                                                                                                   (1, True)]
    # The same (H, seed) measured in two pieces: what this run lacks comes from the record, what it has stays.
    mine = {"h": 2, "seed": 0, "setup": want, "results": {"score_rl": {"m": 0.8}, "teacher": {"m": 1.0}},
            "eval_seconds": {"score_rl": 5.0, "teacher": 1.0}, "stage_seconds": {"mps": 10.0, "eval": 6.0},
            "teacher_tokens": {"mps": {"tokens": 7}}, "equal_budget": {}}
    earlier = {"h": 2, "seed": 0, "setup": want, "results": {"teacher": {"m": 0.5}, "bc_baseline": {"m": 0.7}},
               "episodes": {"bc_baseline": {"math@H2": {"seed0/t": 1.0}}}, "eval_seconds": {"bc_baseline": 4.0},
               "stage_seconds": {"mps": 99.0, "bc_baseline": 30.0},
               "teacher_tokens": {"mps": {"tokens": 9}, "bc_baseline": {"per_retained": 950.0}},
               "equal_budget": {"spent_tokens": 3}}
    f.write_text(json.dumps({"runs": [earlier]}))
    (got,) = study.merge_runs([mine], [str(f)], want)
    assert got["results"] == {"score_rl": {"m": 0.8}, "teacher": {"m": 1.0}, "bc_baseline": {"m": 0.7}}
    assert got["merged_policies"] == {"bc_baseline": str(f)} and "merged_from" not in got
    assert got["episodes"] == earlier["episodes"]
    assert got["stage_seconds"] == {"mps": 10.0, "bc_baseline": 30.0, "eval": 10.0} and got["seconds"] == 50.0
    assert got["teacher_tokens"] == {"mps": {"tokens": 7}, "bc_baseline": {"per_retained": 950.0}}
    assert got["equal_budget"] == {"spent_tokens": 3}
    f.write_text(json.dumps({"runs": [{"h": 2, "seed": 1, "setup": study.setup("default", None, [])}]}))
    with pytest.raises(SystemExit, match="another setup"):
        study.merge_runs([mine], [str(f)], want)
    f.write_text("{}")
    with pytest.raises(SystemExit, match="not a study.json"):
        study.merge_runs([], [str(f)], want)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_seed_free_policies_are_evaluated_once_per_study(tmp_path, benchmark_script, capsys):
    """The untrained student and the teacher do not depend on the training seed: the run of seed 1 takes their
    held-out episodes from seed 0's run, and they are the episodes seed 1 would have sampled itself."""
    from score_distill.compare import seed_free
    from score_distill.trajectory import Trajectory

    study = benchmark_script("distillation_study")
    out = tmp_path / "study"
    args = ["--preset", "tiny", "--horizons", "2", "--seeds", "0,1", "--out", str(out), "tasks.suites=[math]",
            "tasks.n_train=6", "tasks.n_eval=2", "--methods", "student_init,teacher,bc_init",
            "--eval-n", "3", "--eval-seed", "7000"]
    assert study.main(args) == 0
    err = capsys.readouterr().err
    assert "student_init: held-out episodes taken from H2-seed0" in err
    # A clean console, as `score-distill run`'s: stage results on the terminal, library chatter in each run's log.
    assert "bc_init: teacher solved" in err and "Loading weights" not in err and "training tasks (near" not in err
    assert "training tasks (near" in (out / "H2-seed0" / "run.log").read_text()
    runs = {r["seed"]: r for r in json.loads((out / "eval-s7000-n3_study.json").read_text())["runs"]}
    assert "reused_episodes" not in runs[0]
    assert runs[1]["reused_episodes"] == {"student_init": "H2-seed0", "teacher": "H2-seed0"}
    assert set(runs[1]["eval_seconds"]) == {"bc_init"}  # nothing decoded for the reused policies
    assert runs[1]["results"]["student_init"] == runs[0]["results"]["student_init"]
    s0, s1 = out / "H2-seed0" / "eval-s7000-n3", out / "H2-seed1" / "eval-s7000-n3"
    assert (s0 / "tasks.jsonl").read_bytes() == (s1 / "tasks.jsonl").read_bytes()
    assert not (out / "H2-seed0" / "eval").exists()  # the run's own small held-out set is not evaluated
    # The premise, checked: seed 1 evaluating the untrained student itself writes the same episodes.
    copied = read_jsonl(s1 / "student_init" / "math@H2" / "seed0.jsonl", Trajectory)
    for name in ("student_init", "teacher", seed_free.REUSED_FILE, seed_free.KEYS_FILE, "results.json",
                 "eval_seconds.json"):
        target = s1 / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    (s0 / seed_free.KEYS_FILE).unlink()  # no sibling to take from: seed 1 decodes them
    assert study.main([*args[:5], "1", *args[6:]]) == 0
    (fresh_run,) = [r for r in json.loads((out / "eval-s7000-n3_study.json").read_text())["runs"] if r["seed"] == 1]
    assert "reused_episodes" not in fresh_run and "student_init" in fresh_run["eval_seconds"]
    fresh = read_jsonl(s1 / "student_init" / "math@H2" / "seed0.jsonl", Trajectory)
    assert [t.task.id for t in fresh] == [t.task.id for t in copied]
    assert [[(s.turn_text(), s.tokens) for s in t.steps] for t in fresh] == [
        [(s.turn_text(), s.tokens) for s in t.steps] for t in copied]
    assert fresh_run["results"]["student_init"] == runs[0]["results"]["student_init"]
    # Another setting of the policy is another key: its files are not taken.
    cfg = study.run_config("tiny", None, ["tasks.suites=[math]"], 2, 1)
    other = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"max_new_tokens": 7})})
    assert seed_free.policy_key(cfg, s1, "student_init") != seed_free.policy_key(other, s1, "student_init")
    assert seed_free.policy_key(cfg, s1, "student_init") != seed_free.policy_key(cfg, s1, "teacher")
