"""The orchestrator's loop over the STAGES table, on stand-in stages: order, resume, switched-off stages owed once
switched on, stale stages rerun, --from/--to with the trash, and ``only``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

import score_distill.pipeline as pipeline
from score_distill.config import ConfigError, load_config
from score_distill.pipeline import RunContext, run_stages
from score_distill.pipeline.stages import STAGE_NAMES, STAGES, Stage


@dataclass(frozen=True)
class FakeStage(Stage):
    calls: list | None = None

    def module(self):
        def run(ctx, cfg):
            self.calls.append(self.name)
            (ctx.stage_dir(self.name) / "out.txt").parent.mkdir(parents=True, exist_ok=True)
            (ctx.stage_dir(self.name) / "out.txt").write_text(self.name)
            return {"model": f"m-{self.name}"}

        return SimpleNamespace(run=run)


@pytest.fixture
def fake(monkeypatch):
    calls: list[str] = []
    stale = {"eval": False}
    table = (FakeStage("a", calls=calls), FakeStage("arm", policy=True, enabled=lambda c: c.compare.bc_continued,
                                                     calls=calls),
             FakeStage("eval", stale=lambda ctx, cfg: stale["eval"], calls=calls), FakeStage("z", calls=calls))
    monkeypatch.setattr(pipeline, "STAGES", table)
    monkeypatch.setattr(pipeline, "STAGE_NAMES", [s.name for s in table])
    monkeypatch.setattr(pipeline, "summary", lambda ctx: {"ok": True})
    return calls, stale


def test_loop_resumes_owes_switched_on_stages_and_reruns_stale_ones(fake, tmp_path):
    calls, stale = fake
    cfg = load_config(preset="tiny")
    run_stages(RunContext.open(cfg, tmp_path / "r", "tiny"))
    assert calls == ["a", "eval", "z"]
    arm = json.loads((tmp_path / "r" / "arm" / "stage.json").read_text())
    assert arm["skipped"] == "disabled" and arm["model"] is None
    assert json.loads((tmp_path / "r" / "a" / "stage.json").read_text())["model"] == "m-a"
    calls.clear()
    run_stages(RunContext.open(cfg, tmp_path / "r", "tiny"))
    assert calls == []  # everything done
    on = load_config(preset="tiny", overrides=["compare.bc_continued=true"])
    stale["eval"] = True
    run_stages(RunContext.open(on, tmp_path / "r", "tiny"))
    assert calls == ["arm", "eval"]  # the arm is owed; eval is done but stale; z is done
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert len(manifest["history"]) == 3
    # The record keeps what each resumption changed, not only the latest config.
    assert "config_changes" not in manifest["history"][1]
    assert manifest["history"][2]["config_changes"] == ["compare.bc_continued: False -> True"]
    assert manifest["config"]["compare"]["bc_continued"] is True


def test_from_to_trash_and_only(fake, tmp_path):
    calls, _ = fake
    cfg = load_config(preset="tiny")
    run_stages(RunContext.open(cfg, tmp_path / "r", "tiny"), only=["a", "z"])
    assert calls == ["a", "z"] and not (tmp_path / "r" / "eval").exists()
    calls.clear()
    run_stages(RunContext.open(cfg, tmp_path / "r", "tiny"), from_stage="a", to_stage="eval")
    assert calls == ["a", "eval"]
    assert [p.name.split("-")[0] for p in (tmp_path / "r" / ".trash").iterdir()] == ["a"]
    with pytest.raises(ConfigError, match="unknown stage 'nowhere'"):
        run_stages(RunContext.open(cfg, tmp_path / "r", "tiny"), only=["nowhere"])


def test_the_real_table_names_every_stage_module():
    assert STAGE_NAMES[0] == "tasks" and STAGE_NAMES[-2:] == ["eval", "report"]
    for s in STAGES:
        assert callable(s.module().run), s.name
    # Every arm the compare config can switch on is a stage of the same name.
    from score_distill.config import CompareConfig

    arms = set(CompareConfig.model_fields) - {"match_compute"}
    assert arms <= set(STAGE_NAMES)
