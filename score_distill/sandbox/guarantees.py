"""guarantees(config): what the sandbox actually enforces on this machine (for `score-distill doctor`)."""

from __future__ import annotations

import os

from score_distill.sandbox.config import SandboxConfig
from score_distill.sandbox.sandbox import Sandbox

_NETWORK_MEANING = {
    "namespace": "own empty network namespace: no interface but a down loopback, nothing is reachable",
    "audit-hook": "WEAK: Python audit hook refuses socket connect/bind/send/resolve; native code (ctypes) bypasses it",
    "none": "network is not restricted (network='allow')",
}

_SOCKETS_MEANING = {
    "seccomp": "kernel (seccomp) refuses socket(2) of every family and io_uring: no unix socket of the host "
               "(D-Bus, journald, container runtimes, local servers) and no network is reachable, ctypes or not",
    "allowed": "WEAK: socket(2) works; unix sockets whose files are visible in the sandbox can be connected to",
}


def guarantees(config: SandboxConfig | None = None) -> dict:
    """Start one interpreter and report what it has in force (measured, not assumed)."""
    config = config or SandboxConfig()
    with Sandbox(config) as sb:
        rep = sb.isolation
        probe = sb.run("import os\nprint(os.getuid())", recorded=None) if config.allowed_imports is None else None
    return {
        "host_is_root": os.geteuid() == 0,
        "uid": rep.get("uid"),
        "privileges": rep.get("privileges"),
        "network_isolation": rep.get("network"),
        "network_meaning": _NETWORK_MEANING.get(rep.get("network"), ""),
        "sockets": rep.get("sockets", "allowed"),
        "sockets_meaning": _SOCKETS_MEANING.get(rep.get("sockets", "allowed"), ""),
        "filesystem": rep.get("filesystem"),
        "hidden_paths": rep.get("hidden", []),
        "readonly_failed": rep.get("readonly_failed", []),
        "limits": rep.get("limits", {}),
        "import_allowlist": config.allowed_imports is not None,
        "errors": rep.get("errors", []),
        "probe_uid": probe.observation.strip() if probe else None,
    }
