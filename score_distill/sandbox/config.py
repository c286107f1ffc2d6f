"""SandboxConfig: limits and isolation settings for one model-code interpreter."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The SCoRe reference's import whitelist plus harmless standard-library helpers. Enforced on the
# model's own import statements only; it is defence in depth, not the security boundary (the
# process isolation is): a determined program can reach other modules through allowed ones.
REFERENCE_IMPORTS = ["collections", "datetime", "itertools", "math", "numpy", "queue", "random", "re", "stat",
                     "statistics", "sympy", "time", "unicodedata"]
DEFAULT_ALLOWED_IMPORTS = REFERENCE_IMPORTS + ["fractions", "decimal", "functools", "operator", "string", "json",
                                               "heapq", "bisect", "copy", "cmath", "typing", "dataclasses", "numbers"]

# Home directories (secrets), and the directories where host daemons keep their sockets and
# episodes keep their workdirs: an episode sees none of them (the seccomp filter refuses sockets
# anyway; hiding is the second layer and keeps other episodes' workdir names out of sight).
DEFAULT_HIDE_PATHS = ["/root", "/home", "/run", "/var/run", "/tmp", "/var/tmp", "/dev/shm"]


class SandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(10.0, gt=0, description="wall-clock limit of one run() (one code cell)")
    memory_mb: int = Field(1024, ge=64, description="address-space limit of the interpreter (RLIMIT_AS)")
    cpu_s: int = Field(600, ge=1, description="CPU seconds for the interpreter's whole life (RLIMIT_CPU)")
    max_processes: int = Field(32, ge=1, description="processes+threads of the sandbox uid (RLIMIT_NPROC, root only)")
    max_file_mb: int = Field(64, ge=1, description="largest file the code may write, output included (RLIMIT_FSIZE)")
    workdir_mb: int = Field(256, ge=1, description="size of the workdir (a private tmpfs where mount namespaces work)")
    max_open_files: int = Field(128, ge=16, description="RLIMIT_NOFILE")
    max_output_chars: int = Field(4000, ge=100, description="observation cut beyond this, with a marker")
    allowed_imports: list[str] | None = Field(default_factory=lambda: list(DEFAULT_ALLOWED_IMPORTS),
                                              description="None: no import restriction")
    network: Literal["namespace", "audit-hook", "allow"] = Field(
        "namespace", description="'namespace': a new empty network namespace (falls back to 'audit-hook' where that "
                                 "is impossible); 'audit-hook': only the weaker in-process hook; 'allow': host network")
    socket_filter: Literal["required", "if-available"] = Field(
        "required", description="a seccomp filter refuses socket(2) of every family (unix sockets included) unless "
                                "network='allow'. 'required': the interpreter does not start where the kernel "
                                "refuses the filter; 'if-available': it starts without (guarantees() says so)")
    uid: int | None = Field(None, description="root only: run as this uid; None: a free uid from uid_range per sandbox")
    uid_range: tuple[int, int] = Field((1_500_000, 1_501_000), description="[start, end) of per-sandbox uids (root)")
    hide_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_HIDE_PATHS),
                                  description="replaced by an empty tmpfs inside the sandbox (the interpreter's "
                                              "own install and the workdir are re-exposed)")
    start_timeout_s: float = Field(30.0, gt=0, description="how long a new interpreter may take to start")
