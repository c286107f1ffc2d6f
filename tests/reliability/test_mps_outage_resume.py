"""The teacher goes down during MPS: the pipeline stops after MPS with one clear line, keeps every
record, and the same command run again (teacher back) redoes only the failed tasks and goes on."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from score_distill.agent import format as fmt
from score_distill.cli import main
from score_distill.stages.mps import CORRECTED, EXHAUSTED, teacher_unreachable
from score_distill.teachers import prompts
from score_distill.testing import FakeOpenAIServer, Fault
from score_distill.trajectory import Task, Trajectory
from score_distill.utils.jsonl import read_jsonl


class Teacher:
    """Solve / locate / write from the built-in tasks' ground truth; locate answers 503 while ``down``."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.down = False
        self.lock = threading.Lock()
        self.tasks: dict[str, Task] = {}
        self.locates = 0

    def task(self, question: str) -> Task:
        with self.lock:
            if not self.tasks:
                for name in ("train", "eval"):
                    for t in read_jsonl(self.run_dir / "tasks" / f"{name}.jsonl", Task):
                        self.tasks[t.question] = t
            return self.tasks[question]

    @staticmethod
    def step(task: Task, k: int) -> str:
        s = task.meta["solution"][min(k, len(task.meta["solution"]) - 1)]
        return fmt.render_plan(s["thought"]) if s["kind"] == "plan" else fmt.render_action(s["thought"], s["code"])

    def __call__(self, req: dict):
        msgs = req["messages"]
        system, user = msgs[0]["content"], next(m["content"] for m in msgs if m["role"] == "user")
        if system == prompts.LOCATE_SYSTEM:
            self.locates += 1
            if self.down:
                return Fault.status(503)
            n = int(re.search(r"\((\d+) in total\)", user).group(1))
            return json.dumps({"is_correct": False, "error_analysis": "This step does not follow from the task.",
                               "first_error_step": min(2, n), "suggestion": "Work it out step by step."})
        if system.startswith(prompts.WRITE_SYSTEM):
            task = self.task(user.split("Task:\n", 1)[1].split("\n\n", 1)[0])
            k = int(re.search(r"which you replace:\n\nStep (\d+)", user).group(1)) - 1
            return self.step(task, k)
        return self.step(self.task(user), sum(1 for m in msgs if m["role"] == "assistant"))


def test_teacher_outage_in_mps_stops_the_run_and_a_rerun_redoes_only_those_tasks(tmp_path, capsys):
    run_dir = tmp_path / "run"
    teacher = Teacher(run_dir)
    with FakeOpenAIServer(teacher) as srv:
        args = ["run", "--preset", "tiny", "--out", str(run_dir), "--to", "split", "teacher.kind=llm",
                f"teacher.base_url={srv.base_url}", "teacher.model=fake-model", "teacher.max_retries=0",
                "teacher.timeout_s=5", "tasks.suites=[math]", "tasks.n_train=6", "bc.share=0.34",
                "bc_baseline.enabled=false", "mps.chunk_size=2"]
        teacher.down = True
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "4 of 4 tasks failed because the teacher answered with server errors (HTTP 5xx) (server_error: 4)" \
            in " ".join(err.split()) and "Traceback" not in err
        assert "run the same command again" in err
        mps = run_dir / "mps" / "trajectories.jsonl"
        first = read_jsonl(mps, Trajectory)
        assert len(first) == 4 and all(teacher_unreachable(r) for r in first)
        assert not (run_dir / "mps" / "stage.json").exists() and (run_dir / "bc_init" / "stage.json").exists()
        bc_model = (run_dir / "bc_init" / "train" / "model" / "model.safetensors").stat().st_mtime

        teacher.down = False
        assert main(args) == 0
        again = read_jsonl(mps, Trajectory)
        assert [r.task.id for r in again] == [r.task.id for r in first]  # one record per task, same order
        # Reviewed this time (the tiny student rarely ends right, so corrected or exhausted), none failed.
        assert all(r.meta["mps_status"] in (CORRECTED, EXHAUSTED) for r in again), [r.meta for r in again]
        assert teacher.locates >= 4 + 4
        assert (run_dir / "split" / "stage.json").exists()
        assert (run_dir / "bc_init" / "train" / "model" / "model.safetensors").stat().st_mtime == bc_model
