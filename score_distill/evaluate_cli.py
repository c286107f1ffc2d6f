"""``score-distill eval``: any policy (local model, checkpoint, endpoint) on built-in suites and paper benchmarks."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.console import Console

from score_distill.config import ConfigError

console = Console(stderr=True)


def _suites(args: argparse.Namespace) -> dict:
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


def evaluate_cli(args: argparse.Namespace) -> int:
    from score_distill.agent.loop import AgentConfig
    from score_distill.models.base import SamplingParams
    from score_distill.sandbox import SandboxConfig, SandboxPool
    from score_distill.stages.evaluate import evaluate_policy, policy_runner
    from score_distill.utils.jsonl import write_json

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds '{args.seeds}': expected comma-separated integers") from None
    suites = _suites(args)
    if args.endpoint:
        from score_distill.models.openai_compat import OpenAIPolicy

        if not args.model_name:
            raise ConfigError("--endpoint needs --model-name (the model the server serves)")
        policy = OpenAIPolicy(args.endpoint, args.model_name, api_key_env=args.api_key_env)
        err = policy.ping()
        if err:
            from score_distill.user_errors import EndpointError

            raise EndpointError(f"{args.endpoint}: not reachable ({err})")
        name = args.model_name
    else:
        from score_distill.models.hf import TransformersPolicy

        policy = TransformersPolicy(args.model, name=Path(args.model).name)
        name = Path(args.model).name
    agent = AgentConfig(max_steps=args.max_steps, max_new_tokens=args.max_new_tokens)
    out = Path(args.out) / re.sub(r"[^\w.-]", "_", name)
    pool = SandboxPool(SandboxConfig(), max_workers=4)
    try:
        results = evaluate_policy(policy_runner(policy, pool, agent, SamplingParams(), label=f"eval {name}"),
                                  suites, seeds, out)
    finally:
        pool.close()
    write_json(out / "results.json", results)
    from score_distill.report.terminal import render_summary_table

    print(render_summary_table({"policies": {name: results}}))
    console.print(f"results: {out / 'results.json'}")
    return 0
