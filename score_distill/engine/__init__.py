"""In-process rollout engine: per-episode KV caches kept across turns, continuous batching, shared prefixes."""

from score_distill.engine.engine import WAIT, Continue, Request, RolloutEngine, Turn, engine_supported

__all__ = ["WAIT", "Continue", "Request", "RolloutEngine", "Turn", "engine_supported"]
