"""No secret in any artifact: plant API keys in the environment, run the pipeline with an LLM teacher
behind FakeOpenAIServer (a teacher that also writes code trying to read the keys, and a server that
echoes a key in its error bodies), then scan every file the run wrote, and its console output.

The fake endpoint answers as a competent teacher (ground-truth steps of the built-in tasks), so the
run exercises solve, locate and write over HTTP with the custom ``teacher.api_key_env``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from score_distill.agent import format as fmt
from score_distill.teachers import prompts
from score_distill.testing import FakeOpenAIServer, Fault
from score_distill.trajectory import Task
from score_distill.utils.jsonl import read_jsonl

REPO = Path(__file__).resolve().parents[2]

# Model-written code that tries to read the keys: the environment (os through an allowed module,
# since "import os" is refused), its own and the host's /proc/<pid>/environ.
SPY = """try:
    import os
except Exception:
    import random
    os = random._os
_leak = [os.environ.get(k) for k in ("OPENAI_API_KEY", "SD_TEACHER_KEY")]
for _p in ("/proc/self/environ", "/proc/%d/environ" % os.getppid(), "/proc/1/environ"):
    try:
        _leak.append(open(_p, "rb").read().decode("latin-1"))
    except Exception as _e:
        _leak.append(type(_e).__name__)
print("spy:", _leak)
"""


class HTTPTeacher:
    """Responder: solve / locate / write like the oracle; requests about every third task fail with
    an HTTP 500 whose body echoes the key (a misbehaving proxy)."""

    def __init__(self, run_dir: Path, key: str):
        self.run_dir, self.key = run_dir, key
        self.tasks: dict[str, tuple[int, Task]] = {}
        self.lock = threading.Lock()
        self.kinds: dict[str, int] = {"solve": 0, "locate": 0, "write": 0}

    def task(self, question: str) -> tuple[int, Task]:
        with self.lock:
            if question not in self.tasks:
                for name in ("train", "eval"):
                    for t in read_jsonl(self.run_dir / "tasks" / f"{name}.jsonl", Task):
                        self.tasks.setdefault(t.question, (len(self.tasks), t))
            return self.tasks[question]

    @staticmethod
    def step(task: Task, k: int) -> str:
        sol = task.meta["solution"]
        s = sol[min(k, len(sol) - 1)]
        if s["kind"] == "plan":
            return fmt.render_plan(s["thought"])
        return fmt.render_action(s["thought"], (SPY if k == 1 else "") + s["code"])

    def __call__(self, req: dict):
        msgs = req["messages"]
        system, user = msgs[0]["content"], next(m["content"] for m in msgs if m["role"] == "user")
        if system == prompts.LOCATE_SYSTEM:
            self.kinds["locate"] += 1
            i, task = self.task(user.split("Task:\n", 1)[1].split("\n\nReference answer:", 1)[0])
            if i % 3 == 0:
                return Fault.status(500, body=json.dumps({"error": f"invalid api key {self.key}"}))
            n = int(re.search(r"\((\d+) in total\)", user).group(1))
            return json.dumps({"is_correct": False, "error_analysis": "This step does not follow from the task.",
                               "first_error_step": min(2, n), "suggestion": "Work it out step by step."})
        if system.startswith(prompts.WRITE_SYSTEM):
            self.kinds["write"] += 1
            _, task = self.task(user.split("Task:\n", 1)[1].split("\n\n", 1)[0])
            k = int(re.search(r"which you replace:\n\nStep (\d+)", user).group(1)) - 1
            return self.step(task, k)
        self.kinds["solve"] += 1
        i, task = self.task(user)
        if i % 3 == 0:
            return Fault.status(500, body=json.dumps({"error": f"invalid api key {self.key}"}))
        return self.step(task, sum(1 for m in msgs if m["role"] == "assistant"))


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(b"Bearer " + raw), raw[::-1], secret.encode("utf-16-le")]


def scan(root: Path, secrets: list[str]) -> list[str]:
    hits = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            hits += [f"{p}: {s[:12]}..." for s in secrets for f in _forms(s) if f in data]
    return hits


def run_pipeline_with_planted_keys(tmp_path: Path, to_stage: str | None) -> tuple[Path, str, HTTPTeacher, list]:
    openai_key, teacher_key = f"sk-planted-{uuid.uuid4().hex}", f"sk-teacher-{uuid.uuid4().hex}"
    run_dir = tmp_path / "run"
    responder = HTTPTeacher(run_dir, teacher_key)
    env = {**os.environ, "OPENAI_API_KEY": openai_key, "SD_TEACHER_KEY": teacher_key, "TOKENIZERS_PARALLELISM": "false"}
    with FakeOpenAIServer(responder) as srv:
        cmd = [sys.executable, "-m", "score_distill.cli", "run", "--preset", "tiny", "--out", str(run_dir),
               "teacher.kind=llm", f"teacher.base_url={srv.base_url}", "teacher.model=fake-model",
               "teacher.api_key_env=SD_TEACHER_KEY", "teacher.max_retries=1", "tasks.n_train=6",
               "bc_baseline.enabled=false", "mps.retry_failed=false",  # keep the 500s' records and go on
               "bc.sft.keep_finished_checkpoints=true",  # the checkpoints' files are scanned too
               "eval.policies=[teacher,student_init,bc_init,score_sft,score_rl]"]
        if to_stage:
            cmd += ["--to", to_stage]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=900)
        auth = {r.headers.get("authorization") for r in srv.chat_requests}
    log = tmp_path / "console.log"
    log.write_bytes(proc.stdout + b"\n" + proc.stderr)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    # The keys were really in play: the custom env var's key was sent, and nothing else was.
    assert auth == {f"Bearer {teacher_key}"}
    return run_dir, log, responder, [openai_key, teacher_key]


def _check(run_dir: Path, log: Path, responder: HTTPTeacher, secrets: list[str], mps_expected: bool) -> None:
    assert responder.kinds["solve"] > 0
    texts = [p.read_text(errors="replace") for p in run_dir.rglob("*.jsonl")]
    assert any("spy: [None, None" in t for t in texts), "the spy step never ran"
    # The echoed key reached the failure reasons, scrubbed.
    assert any("invalid api key ***" in t for t in texts)
    if mps_expected:
        assert responder.kinds["locate"] > 0 and responder.kinds["write"] > 0
        assert "invalid api key ***" in (run_dir / "mps" / "trajectories.jsonl").read_text()
    hits = scan(log.parent, secrets)  # the run directory and the console output
    assert not hits, hits


def test_no_secret_in_artifacts_of_bc_init(tmp_path):
    """Teacher solving over HTTP, SFT with checkpoints and TensorBoard files: ~30 s."""
    run_dir, log, responder, secrets = run_pipeline_with_planted_keys(tmp_path, "bc_init")
    assert list(run_dir.glob("bc_init/train/checkpoint-*/*.json")) and list(run_dir.rglob("events.out.tfevents*"))
    _check(run_dir, log, responder, secrets, mps_expected=False)


@pytest.mark.slow
def test_no_secret_in_any_artifact_of_a_full_run(tmp_path):
    run_dir, log, responder, secrets = run_pipeline_with_planted_keys(tmp_path, None)
    assert (run_dir / "report.html").exists() and list(run_dir.rglob("events.out.tfevents*"))
    _check(run_dir, log, responder, secrets, mps_expected=True)
