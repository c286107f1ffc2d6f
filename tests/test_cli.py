"""The small user commands: sandbox, tasks, config, doctor, eval, report."""

import json

from score_distill.cli import main


def test_sandbox_command_runs_a_file_as_an_agent_step(tmp_path, capsys):
    f = tmp_path / "step.py"
    f.write_text("x = 6 * 7\nprint(x)\nfinal_answer_print(x)\n")
    assert main(["sandbox", str(f)]) == 0
    out = capsys.readouterr().out
    assert "42" in out
    assert main(["sandbox", str(tmp_path / "nope.py")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_tasks_command_prints_a_solution(capsys):
    assert main(["tasks", "math", "--n", "1", "--horizon", "2"]) == 0
    out = capsys.readouterr().out
    assert "Q:" in out and "final_answer_print" in out


def test_config_command_prints_resolved_yaml(capsys):
    assert main(["config", "--preset", "tiny", "rl.group_size=3"]) == 0
    assert "group_size: 3" in capsys.readouterr().out


def test_doctor_reports_sandbox_guarantees(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "network_isolation" in out and "torch" in out


def test_eval_command_on_a_tiny_model(tmp_path, capsys):
    code = main(["eval", "--model", "tiny", "--suite", "math@H2", "--n", "2", "--seeds", "0,1", "--max-steps", "2",
                 "--max-new-tokens", "16", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    results = json.loads(next(tmp_path.rglob("results.json")).read_text())
    m = results["math@H2"]
    assert m["n_tasks"] == 2 and len(m["per_seed"]) == 2 and 0.0 <= m["success_mean"] <= 1.0
    assert main(["eval", "--model", "tiny", "--suite", "math-H2", "--out", str(tmp_path)]) == 2
    assert "NAME@H<horizon>" in capsys.readouterr().err


def test_eval_against_an_unreachable_endpoint_is_one_line(tmp_path, capsys):
    code = main(["eval", "--endpoint", "http://127.0.0.1:9/v1", "--model-name", "m", "--suite", "math@H2",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "127.0.0.1:9" in err and "Traceback" not in err


def test_report_command_on_a_non_run_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a score-distill run directory" in capsys.readouterr().err


def test_compare_command_is_the_study_driver(tmp_path, capsys):
    # Nothing evaluated under --out yet: reported, not an error of the user's making.
    assert main(["compare", "--preset", "tiny", "--horizons", "2", "--seeds", "0", "--report-only",
                 "--out", str(tmp_path / "c")]) == 1
    assert "no evaluated runs" in capsys.readouterr().err
    try:
        main(["compare", "--preset", "tiny", "--eval-seed", "7", "--out", str(tmp_path / "c")])
    except SystemExit as e:
        assert "--eval-seed needs --eval-n" in str(e)
    else:
        raise AssertionError("--eval-seed without --eval-n was accepted")
