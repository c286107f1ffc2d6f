"""``score-distill eval``: any policy (local model, checkpoint, endpoint) on built-in suites and paper benchmarks.

Kept light at import (the CLI's parser imports it): heavy modules are imported where used."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.console import Console

console = Console(stderr=True)


def _suites(args: argparse.Namespace) -> dict:
    from score_distill.config import ConfigError
    from score_distill.tasks.registry import make_tasks

    suites = {}
    for spec in args.suite:
        m = re.fullmatch(r"(\w+)@H(\d+)", spec)
        if not m:
            raise ConfigError(f"--suite '{spec}': expected NAME@H<horizon>, e.g. math@H4")
        suites[spec] = make_tasks(m.group(1), args.n, int(m.group(2)), args.eval_seed, split="eval")
    if args.benchmark:
        from score_distill.tasks.benchmarks import load_benchmark

        for b in args.benchmark:
            suites[Path(b).stem] = load_benchmark(b)[: args.n]
    if not suites:
        raise ConfigError("nothing to evaluate: give --suite NAME@H<h> and/or --benchmark NAME")
    return suites


def add_endpoint_args(p: argparse.ArgumentParser) -> None:
    """How ``eval --endpoint`` talks to the server (see docs/endpoints.md)."""
    p.add_argument("--max-concurrency", type=int, default=16,
                   help="requests in flight to the endpoint at most: its parallel slots (1 for a default llama.cpp "
                        "server; default 16)")
    p.add_argument("--timeout-s", type=float, default=120.0,
                   help="abandon and retry a request only when the endpoint has sent nothing, on any request, for "
                        "this long (default 120)")
    p.add_argument("--max-retries", type=int, default=3,
                   help="retries after a timeout, dropped connection, HTTP 429 or 5xx (default 3)")
    p.add_argument("--no-stream", action="store_true", help="ask for whole replies (servers that cannot stream)")


# ``--judge-*`` flag -> JudgeConfig field: the configuration's ``eval.judge``, one source of defaults and checks.
JUDGE_FLAGS = {"judge_endpoint": "base_url", "judge_model": "model", "judge_api_key_env": "api_key_env",
               "judge_max_concurrency": "max_concurrency", "judge_timeout_s": "timeout_s",
               "judge_max_retries": "max_retries", "judge_cache": "cache"}


def add_judge_args(p: argparse.ArgumentParser) -> None:
    """The LLM answer judge of ``eval`` (the configuration's ``eval.judge``; see docs/endpoints.md)."""
    g = p.add_argument_group("answer judge", "an LLM that decides the answers of the paper's benchmarks it scores "
                             "by accuracy (math, deep search) when exact match and math-verify say no; off unless "
                             "--judge-endpoint is given")
    g.add_argument("--judge-endpoint", help="OpenAI-compatible base URL of the judge, e.g. http://localhost:8001/v1")
    g.add_argument("--judge-model", help="model name the judge endpoint serves")
    g.add_argument("--judge-api-key-env", help="environment variable holding the judge's API key "
                   "(default OPENAI_API_KEY; local servers need none)")
    g.add_argument("--judge-max-concurrency", type=int, help="judge requests in flight at most (default 16)")
    g.add_argument("--judge-timeout-s", type=float, help="silence after which a judge request is retried "
                   "(default 120)")
    g.add_argument("--judge-max-retries", type=int, help="retries of a failed judge request (default 3)")
    g.add_argument("--judge-cache", help="JSONL verdict cache (default OUT/answer_judge_cache.jsonl): a repeated "
                   "evaluation never asks twice")
    g.add_argument("--no-judge", action="store_true", help="no answer judge, whatever --judge-* options say "
                   "(deterministic scoring only)")


def make_judge(args: argparse.Namespace, out: Path):
    """The judge the ``--judge-*`` options describe (checked as ``eval.judge`` is), or None when it is off."""
    from pydantic import ValidationError

    from score_distill.config import ConfigError
    from score_distill.tasks.judge import JudgeConfig, make_answer_judge

    given = {field: getattr(args, flag, None) for flag, field in JUDGE_FLAGS.items()}
    given = {k: v for k, v in given.items() if v is not None}
    if getattr(args, "no_judge", False) or not given:
        return None
    if not args.judge_endpoint or not args.judge_model:
        raise ConfigError("the answer judge needs both --judge-endpoint and --judge-model (or --no-judge)")
    try:
        cfg = JudgeConfig(**given)
    except ValidationError as e:
        err = e.errors()[0]
        flag = next(f for f, field in JUDGE_FLAGS.items() if field == err["loc"][0])
        raise ConfigError(f"--{flag.replace('_', '-')}: {err['msg']}") from None
    judge = make_answer_judge(cfg, out / "answer_judge_cache.jsonl")
    err = judge.policy.ping()
    if err:
        from score_distill.user_errors import EndpointError

        raise EndpointError(f"{cfg.base_url}: the answer judge's endpoint check failed: {err}")
    return judge


_GENERIC_DIRS = re.compile(r"^(model|train|checkpoint-\d+|final)$")


def model_label(model: str) -> str:
    """The policy's name in the output folder (and, with ``--seed-by-policy``, in the sampling seeds): a run's
    models live in ``RUN/<stage>/model`` or ``RUN/<stage>/train/model``, so the generic folder names are skipped up
    to the stage's (two models of one run would otherwise share a folder)."""
    path = Path(model)
    for part in (path, *path.parents):
        if part.name and not _GENERIC_DIRS.match(part.name):
            return part.name
    return path.name or model


def evaluate_cli(args: argparse.Namespace) -> int:
    from score_distill.agent.loop import AgentConfig
    from score_distill.config import ConfigError
    from score_distill.models.base import SamplingParams
    from score_distill.sandbox import SandboxConfig, SandboxPool
    from score_distill.stages.evaluate import evaluate_policy, policy_runner
    from score_distill.utils.jsonl import write_json

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds '{args.seeds}': expected comma-separated integers") from None
    suites = _suites(args)
    judge = make_judge(args, Path(args.out))
    if judge is not None:
        from score_distill.tasks.judge import judged

        if not any(judged(t) for tasks in suites.values() for t in tasks):
            console.print("[yellow]the answer judge decides none of these tasks: it judges only the paper's "
                          "benchmarks scored by accuracy (aime24, math500, gaia, hle...), never a built-in suite, "
                          "a QA benchmark or a task file's own scorer[/]")
    if args.endpoint:
        from score_distill.models.openai_compat import OpenAIPolicy

        if not args.model_name:
            raise ConfigError("--endpoint needs --model-name (the model the server serves)")
        if args.max_concurrency < 1 or args.timeout_s <= 0 or args.max_retries < 0:
            raise ConfigError("--max-concurrency must be >= 1, --timeout-s > 0 and --max-retries >= 0")
        policy = OpenAIPolicy(args.endpoint, args.model_name, api_key_env=args.api_key_env,
                              max_concurrency=args.max_concurrency, timeout_s=args.timeout_s,
                              max_retries=args.max_retries, stream=not args.no_stream)
        err = policy.ping()
        if err:
            from score_distill.user_errors import EndpointError

            raise EndpointError(f"{args.endpoint}: the endpoint check failed: {err}")
        name = args.model_name
    else:
        from score_distill.models.hf import TransformersPolicy

        name = model_label(args.model)
        batch_size = getattr(args, "batch_size", 32)
        if batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        policy = TransformersPolicy(args.model, name=name, batch_size=batch_size)
        policy.draft_tokens = getattr(args, "draft", 0)
        if policy.draft_tokens < 0:
            raise ConfigError("--draft must be >= 0")
    agent = AgentConfig(max_steps=args.max_steps, max_new_tokens=args.max_new_tokens)
    out = Path(args.out) / re.sub(r"[^\w.-]", "_", name)
    pool = SandboxPool(SandboxConfig(), max_workers=4)
    try:
        results = evaluate_policy(policy_runner(policy, pool, agent, SamplingParams(), label=f"eval {name}",
                                                common_seeds=not getattr(args, "seed_by_policy", False)),
                                  suites, seeds, out, judge=judge)
    finally:
        pool.close()
    write_json(out / "results.json", results)
    from score_distill.report.terminal import render_summary_table

    print(render_summary_table({"policies": {name: results}}))
    if judge is not None:
        u = judge.usage
        console.print(f"answer judge {judge.policy.name}: {u.calls} calls, {u.total_tokens:,} tokens, "
                      f"{u.failures} failed verdicts (scored 0); cache {judge.cache_path}")
    console.print(f"results: {out / 'results.json'}")
    return 0
