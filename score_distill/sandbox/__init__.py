"""Isolated, persistent Python interpreters for model-written code (see docs/sandbox.md)."""

from score_distill.sandbox.config import DEFAULT_ALLOWED_IMPORTS, SandboxConfig
from score_distill.sandbox.guarantees import guarantees
from score_distill.sandbox.pool import SandboxPool
from score_distill.sandbox.sandbox import ExecResult, Sandbox

__all__ = ["DEFAULT_ALLOWED_IMPORTS", "ExecResult", "Sandbox", "SandboxConfig", "SandboxPool", "guarantees"]
