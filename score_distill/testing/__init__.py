"""Test helpers that speak real protocols (e.g. a fake OpenAI-compatible HTTP server)."""

from score_distill.testing.openai_server import FakeOpenAIServer, Fault, RecordedRequest

__all__ = ["Fault", "FakeOpenAIServer", "RecordedRequest"]
