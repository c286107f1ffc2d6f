"""In-process rollout engine: per-episode KV caches kept across turns, continuous batching, shared prefixes."""

from score_distill.engine.engine import LATER, WAIT, Continue, Request, RolloutEngine, Turn, engine_supported

__all__ = ["LATER", "WAIT", "Continue", "Request", "RolloutEngine", "Turn", "engine_supported"]
