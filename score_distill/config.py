"""The run configuration: one pydantic model composed of each component's own config.

Sources, later wins: the preset (``default``, ``tiny``, ``paper`` in ``score_distill/configs/``),
a user YAML file (``--config``), then ``key=value`` overrides with dotted keys
(``rl.group_size=4``, values parsed as YAML). Unknown keys and wrong types are errors that name
the key and the file, never silently ignored.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from score_distill.agent.loop import AgentConfig
from score_distill.rl.config import RLConfig
from score_distill.sandbox import SandboxConfig
from score_distill.stages.evaluate import EvalConfig
from score_distill.stages.mps import MPSConfig
from score_distill.stages.split import SplitConfig
from score_distill.training.sft import SFTConfig


class ConfigError(ValueError):
    """A configuration problem, with one line that names the key and the file."""


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudentConfig(_Cfg):
    model: str = Field("smollm2-135m", description="'smollm2-135m', 'tiny', a local folder or a hub id.")
    batch_size: int = Field(16, ge=1, description="Generation batch size.")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1'...")
    draft_tokens: int = Field(0, ge=0, description="Speculative decoding in the in-process rollout engine (MPS, "
                              "evaluation, RL): verify up to this many prompt-lookup ids per episode and step. "
                              "Greedy tokens and the sampling distribution are unchanged; the random draws are "
                              "not. 0: off (docs/benchmarks.md: 1 helps on CPU, more does not).")


class TeacherConfig(_Cfg):
    kind: Literal["oracle", "llm"] = Field("oracle", description="'oracle' (built-in suites) or 'llm' (an endpoint).")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    model: str | None = Field(None, description="Model name served by the endpoint.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    max_concurrency: int = Field(16, ge=1, description="Requests in flight to the endpoint at most, over all "
                                 "stages and threads: its parallel slots (1 for a default llama.cpp server).")
    timeout_s: float = Field(120.0, gt=0, description="Abandon a request (and retry it) only when the endpoint has "
                             "sent nothing, no token on any request, for this long. Replies are streamed.")
    max_retries: int = Field(3, ge=0, description="Retries of a request after a timeout, a dropped connection, "
                             "HTTP 429 or 5xx; a request the server refuses is not retried.")
    structured_output: Literal["auto", "json_schema", "json_object", "text"] = Field(
        "auto", description="How the reviewer's JSON is asked for: 'auto' tries response_format json_schema, then "
        "json_object, then none (strict parsing), once per endpoint, from what the server accepts.")
    stream: bool = Field(True, description="Stream replies (tokens show the endpoint is working); false for "
                         "servers that cannot stream.")
    temperature: float = Field(0.3, ge=0, description="Sampling temperature of the teacher (reference: 0.9).")
    locator: Literal["judge", "rollout"] = Field(
        "judge", description="'judge': the teacher reads the trajectory; 'rollout': rollout-verified first error."
    )


class TasksConfig(_Cfg):
    suites: list[str] = Field(default_factory=lambda: ["math", "search"], description="Built-in suites.")
    horizons: list[int] = Field(default_factory=lambda: [2, 4], description="Horizons H (dependent steps).")
    n_train: int = Field(40, ge=0, description="Training tasks per suite and horizon.")
    n_eval: int = Field(20, ge=0, description="Held-out evaluation tasks per suite and horizon.")
    train_seed: int = 1000
    eval_seed: int = 2000
    seed_files: list[str] = Field(
        default_factory=list, description="Extra training tasks (JSONL question/true_answer)."
    )
    dedupe_against_eval: bool = Field(True, description="Drop training tasks that duplicate evaluation questions.")


class SearchConfig(_Cfg):
    """The web_search backend for tasks outside the built-in suites (built-in search tasks bring their own)."""

    kind: Literal["none", "corpus", "http"] = Field("none", description="'corpus': local BM25 over a JSONL corpus; "
                                                    "'http': a JSON search API.")
    corpus: str | None = Field(None, description="JSONL file with id/title/text per line (kind 'corpus').")
    url: str | None = Field(None, description="Search API URL (kind 'http').")
    api_key_env: str | None = Field(None, description="Environment variable with the search API key.")
    method: Literal["GET", "POST"] = "GET"
    query_param: str = "q"
    results_path: str = Field("results", description="Dotted path to the result list in the API's JSON answer.")
    title_field: str = "title"
    snippet_field: str = "snippet"
    k: int = Field(5, ge=1, description="Results per query.")


class BCConfig(_Cfg):
    share: float = Field(
        0.2, gt=0, le=1, description="Share of each suite's training tasks the teacher solves for BC init."
    )
    sft: SFTConfig = Field(default_factory=SFTConfig)


class BaselineConfig(_Cfg):
    enabled: bool = Field(True, description="Train the behaviour-cloning baseline on all teacher trajectories.")
    sft: SFTConfig = Field(default_factory=SFTConfig)


class ScoreSFTConfig(_Cfg):
    sft: SFTConfig = Field(default_factory=SFTConfig)


class CompareConfig(_Cfg):
    """The comparison's extra arms: pipeline stages of these names, scored beside SCoRe (see ``compare``).

    ``score-distill compare`` switches them on."""

    bc_equal_budget: bool = Field(False, description="BC on as many teacher trajectories as SCoRe's teacher budget "
                                  "(BC-init trajectories + MPS reviews and corrections) buys.")
    bc_continued: bool = Field(False, description="BC init's model trained further, as many SFT steps as SCoRe-SFT, "
                               "on the teacher's full trajectories: same start and steps as SCoRe-SFT, other data.")
    rl_sparse_reward: bool = Field(False, description="SCoRe-RL ablation: outcome reward only.")
    rl_long_horizon: bool = Field(False, description="SCoRe-RL ablation: rollouts from the task, not the prefix.")
    match_compute: bool = Field(False, description="The BC baseline and equal-budget BC train as many SFT optimizer "
                                "steps as BC init + SCoRe-SFT together (their own batch and max_length settings).")


class RLAgentOverride(_Cfg):
    """What RL rollouts change of ``agent`` (None: the agent's value). RL samples plainly (no repetition
    penalty) at its own temperature so that the sampled tokens follow the policy whose ratio is taken."""

    max_steps: int | None = Field(None, ge=1, description="Turn limit of a rollout, the prefix included.")
    max_new_tokens: int | None = Field(None, ge=1, description="Token limit for one step.")
    max_live_episodes: int | None = Field(None, ge=1, description="Rollouts alive at once.")
    temperature: float | None = Field(1.0, ge=0, description="Sampling temperature of rollouts.")


# RLConfig's own copies of agent settings: in a run configuration they come from ``agent`` + ``rl.agent``.
RL_AGENT_FIELDS = ("max_steps", "max_new_tokens", "max_live_episodes", "temperature")


class RunRLConfig(RLConfig):
    """``rl`` of a run: RLConfig whose rollout settings are an override of ``agent`` (``rl.agent``), not copies."""

    agent: RLAgentOverride = Field(default_factory=RLAgentOverride)
    # Deprecated spellings, still read: moved into ``rl.agent`` with a warning; never written.
    max_steps: int | None = Field(None, exclude=True, description="Deprecated: rl.agent.max_steps.")
    max_new_tokens: int | None = Field(None, exclude=True, description="Deprecated: rl.agent.max_new_tokens.")
    max_live_episodes: int | None = Field(None, exclude=True, description="Deprecated: rl.agent.max_live_episodes.")
    temperature: float | None = Field(None, exclude=True, description="Deprecated: rl.agent.temperature.")

    @model_validator(mode="after")
    def _move_deprecated(self) -> RunRLConfig:
        for name in RL_AGENT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                warnings.warn(f"config key 'rl.{name}' is deprecated: RL's rollout settings are an override of "
                              f"'agent'; write 'rl.agent.{name}' (or set 'agent.{name}' for every stage)",
                              FutureWarning, stacklevel=2)
                setattr(self.agent, name, value)
                object.__setattr__(self, name, None)
        return self


class TrackingConfig(_Cfg):
    tensorboard: bool = True
    wandb: bool = False
    trackio: bool = False


class RunConfig(_Cfg):
    name: str = "score-distill"
    seed: int = 0
    student: StudentConfig = Field(default_factory=StudentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    bc: BCConfig = Field(default_factory=BCConfig)
    bc_baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    mps: MPSConfig = Field(default_factory=MPSConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    score_sft: ScoreSFTConfig = Field(default_factory=ScoreSFTConfig)
    rl: RunRLConfig = Field(default_factory=RunRLConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _one_system_prompt(self) -> RunConfig:
        # One system prompt per task kind (agent/format.py's, from the task's tools) for MPS, SFT, RL and
        # evaluation: a per-stage override made the stages train and test the student on different prompts.
        for key, value in (("agent.system_prompt", self.agent.system_prompt),
                           ("bc.sft.system_prompt", self.bc.sft.system_prompt),
                           ("bc_baseline.sft.system_prompt", self.bc_baseline.sft.system_prompt),
                           ("score_sft.sft.system_prompt", self.score_sft.sft.system_prompt)):
            if value is not None:
                raise ValueError(f"{key} is no longer supported: every stage uses the task kind's system prompt "
                                 "(score_distill.agent.format.system_prompt of the task's tools)")
        return self

    def rl_config(self) -> RLConfig:
        """The RL stage's settings: ``rl`` with the agent's rollout settings, overridden by ``rl.agent``."""
        over = self.rl.agent
        data = self.rl.model_dump(exclude={"agent"})
        data.update(max_steps=over.max_steps or self.agent.max_steps,
                    max_new_tokens=over.max_new_tokens or self.agent.max_new_tokens,
                    max_live_episodes=over.max_live_episodes or self.agent.max_live_episodes,
                    temperature=self.agent.sampling.temperature if over.temperature is None else over.temperature,
                    draft_tokens=self.rl.draft_tokens or self.student.draft_tokens)
        return RLConfig.model_validate(data)


PRESETS = ("default", "tiny", "paper")


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (choose one of: {', '.join(PRESETS)})")
    return Path(str(resources.files("score_distill") / "configs" / f"{name}.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(item: str) -> dict[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value (e.g. rl.group_size=4)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: dict[str, Any] = {}
    cur = node
    parts = key.split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return node


def _explain(e: ValidationError, sources: list[str]) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    where = " + ".join(sources)
    if err["type"] == "extra_forbidden":
        return f"unknown config key '{loc}' (from {where})"
    if not loc:  # a rule across keys (RunConfig's validators): its message names the keys
        return f"{err['msg'].removeprefix('Value error, ')} (from {where})"
    got = err.get("input")
    got_s = "" if isinstance(got, dict) else f" (got {got!r})"
    more = f"; and {len(e.errors()) - 1} more problem(s)" if len(e.errors()) > 1 else ""
    return f"config key '{loc}': {err['msg']}{got_s} (from {where}){more}"


def load_config(
    config_file: str | Path | None = None, overrides: list[str] | None = None, preset: str = "default"
) -> RunConfig:
    sources = [f"preset '{preset}'"]
    data = _read_yaml(preset_path(preset))
    if config_file:
        data = _merge(data, _read_yaml(Path(config_file)))
        sources.append(str(config_file))
    for item in overrides or []:
        data = _merge(data, parse_override(item))
    if overrides:
        sources.append("command-line overrides")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(e, sources)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
