"""Build the configured teacher: the built-in oracle or an LLM behind an OpenAI-compatible endpoint."""

from __future__ import annotations

from typing import Any

from score_distill.teachers.cost import EstimatedCostTeacher


def make_teacher(cfg: Any, pool: Any, tools_for: Any = None):
    """``cfg`` is the RunConfig. The oracle gets estimated token costs (see teachers/cost.py)."""
    tc = cfg.teacher
    if tc.kind == "oracle":
        from score_distill.teachers.oracle import OracleTeacher

        return EstimatedCostTeacher(OracleTeacher(sandbox_pool=pool))
    from score_distill.config import ConfigError
    from score_distill.models.openai_compat import OpenAIPolicy
    from score_distill.teachers.llm import LLMTeacher

    if not tc.base_url or not tc.model:
        raise ConfigError("teacher.kind is 'llm' but teacher.base_url or teacher.model is not set")
    policy = OpenAIPolicy(tc.base_url, tc.model, api_key_env=tc.api_key_env, max_concurrency=tc.max_concurrency,
                          timeout_s=tc.timeout_s, max_retries=tc.max_retries, stream=tc.stream,
                          structured_output=tc.structured_output)
    teacher = LLMTeacher(policy, sandbox_pool=pool, agent_config=cfg.agent, tools_for=tools_for)
    if tc.locator == "rollout":
        from score_distill.teachers.locator import RolloutLocator

        return RolloutLocator(policy, teacher=teacher, sandbox_pool=pool, agent_config=cfg.agent, tools_for=tools_for)
    return teacher
