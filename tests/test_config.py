"""Configuration: presets load, overrides apply, mistakes give one line naming the key and the file."""

from pathlib import Path

import pytest
import yaml

from score_distill.config import ConfigError, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("preset", ["default", "tiny", "paper"])
def test_presets_validate(preset):
    cfg = load_config(preset=preset)
    assert cfg.agent.max_steps >= 1


def test_overrides_with_dotted_keys_and_yaml_values():
    cfg = load_config(preset="tiny", overrides=["rl.group_size=8", "tasks.horizons=[2, 4]", "teacher.kind=llm",
                                                 "bc.sft.lora=true"])
    assert cfg.rl.group_size == 8 and cfg.tasks.horizons == [2, 4] and cfg.teacher.kind == "llm" and cfg.bc.sft.lora


def test_user_file_merges_over_preset(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("mps:\n  max_corrections: 5\n")
    cfg = load_config(f, preset="tiny")
    assert cfg.mps.max_corrections == 5 and cfg.mps.chunk_size == load_config(preset="tiny").mps.chunk_size


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("mps:\n  max_correction: 5\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'mps.max_correction' \(from preset 'tiny' \+ .*my.yaml"):
        load_config(f, preset="tiny")


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"config key 'rl.group_size'.*'many'"):
        load_config(preset="tiny", overrides=["rl.group_size=many"])


def test_bad_yaml_names_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(f)


def test_missing_file_and_bad_override_and_preset(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("rl.group_size")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_config(preset="huge")


def test_configuration_reference_doc_is_current():
    from pathlib import Path

    from score_distill.config_reference import reference_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert doc.read_text().strip() == reference_markdown().strip(), (
        "docs/configuration.md is stale: run `score-distill config --reference > docs/configuration.md`")


@pytest.mark.parametrize("path", sorted([*ROOT.glob("configs/*.yaml"), *ROOT.glob("benchmarks/*.yaml")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.tasks.horizons and cfg.student.model


def test_rl_rollout_settings_are_an_override_of_agent():
    cfg = load_config(preset="tiny", overrides=["agent.max_steps=7", "agent.max_new_tokens=33"])
    rl = cfg.rl_config()
    assert (rl.max_steps, rl.max_new_tokens, rl.max_live_episodes) == (7, 33, cfg.agent.max_live_episodes)
    assert rl.temperature == 1.0  # RL's own default: plain sampling of the policy whose ratio is taken
    rl = load_config(preset="tiny", overrides=["rl.agent.max_steps=4", "rl.agent.temperature=null"]).rl_config()
    assert rl.max_steps == 4 and rl.temperature == cfg.agent.sampling.temperature
    # The dumped config has no copies to disagree with.
    from score_distill.config import dump_config

    dumped = yaml.safe_load(dump_config(cfg))["rl"]
    assert not {"max_steps", "max_new_tokens", "max_live_episodes", "temperature"} & set(dumped)
    assert dumped["agent"]["temperature"] == 1.0


def test_old_rl_agent_keys_still_load_with_a_warning_naming_the_field(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("rl:\n  max_steps: 5\n  max_live_episodes: 8\n")
    with pytest.warns(FutureWarning, match=r"'rl.max_steps' is deprecated.*'rl.agent.max_steps'"):
        cfg = load_config(f, preset="tiny")
    assert cfg.rl_config().max_steps == 5 and cfg.rl_config().max_live_episodes == 8
    assert cfg.rl.agent.max_steps == 5
    from score_distill.config import dump_config

    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(again, preset="tiny").rl_config() == cfg.rl_config()  # round trip, no warning


def test_draft_tokens_reach_evaluation_mps_and_rl(tmp_path):
    from score_distill.models.tiny import build_tiny_model
    from score_distill.pipeline.resources import Resources

    cfg = load_config(preset="tiny", overrides=["student.draft_tokens=2"])
    assert cfg.rl_config().draft_tokens == 2
    assert load_config(preset="tiny", overrides=["student.draft_tokens=2", "rl.draft_tokens=1"]
                       ).rl_config().draft_tokens == 1
    assert load_config(preset="tiny").rl_config().draft_tokens == 0
    policy = Resources(cfg, tmp_path).load_policy(build_tiny_model(tmp_path / "m", seed=0), "student")
    assert policy.draft_tokens == 2
    with pytest.raises(ConfigError, match="draft_tokens"):
        load_config(preset="tiny", overrides=["student.draft_tokens=-1"])
