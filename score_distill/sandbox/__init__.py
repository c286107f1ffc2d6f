"""Isolated, persistent Python interpreters for model-written code (see docs/sandbox.md)."""

from score_distill.sandbox.capacity import HostCapacity, host_capacity
from score_distill.sandbox.config import DEFAULT_ALLOWED_IMPORTS, SandboxConfig
from score_distill.sandbox.guarantees import guarantees
from score_distill.sandbox.pool import PoolFull, SandboxPool
from score_distill.sandbox.sandbox import ExecResult, Sandbox

__all__ = ["DEFAULT_ALLOWED_IMPORTS", "ExecResult", "HostCapacity", "PoolFull", "Sandbox", "SandboxConfig",
           "SandboxPool", "guarantees", "host_capacity"]
