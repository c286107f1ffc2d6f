"""How many live interpreters this host can hold: memory, pids, file descriptors, sandbox uids.

SandboxPool caps its live interpreters at this number (unless told otherwise); episodes beyond
it wait for a free interpreter instead of failing to start. docs/sandbox.md says what each
interpreter costs; benchmarks/sandbox_pool.py measures it.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field

from score_distill.sandbox.config import SandboxConfig

# Memory planned per live interpreter. One with numpy imported takes about 17 MB PSS / 30 MB RSS
# (benchmarks/sandbox_pool.py); the rest is room for the model's own data. A single cell may still
# take up to config.memory_mb (RLIMIT_AS) for a while.
PER_INTERPRETER_MB = 64
# Host fds per live interpreter: control pipe ends (2), output capture (1), uid lock (1) -- measured:
# 1022 open at 254 live. The reserve covers the host's own and the pipes of interpreters being started.
FDS_PER_INTERPRETER = 4
_RESERVE_FDS = 256
_MEMORY_SHARE = 0.8  # of MemAvailable; the rest stays with the host (model, tokenizer, tools)


@dataclass
class HostCapacity:
    live: int  # the smallest of the bounds
    bounds: dict[str, int] = field(default_factory=dict)  # per resource: how many interpreters it allows
    binding: str = ""  # which resource sets `live`

    def describe(self) -> str:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.bounds.items(), key=lambda kv: kv[1]))
        return f"{self.live} live interpreters (bound by {self.binding}; {detail})"


def _meminfo_mb(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def _tasks_now() -> int:
    loadavg = None
    try:
        with open("/proc/loadavg") as f:
            loadavg = f.read().split()
    except OSError:
        pass
    return int(loadavg[3].split("/")[1]) if loadavg and "/" in loadavg[3] else 0


def host_capacity(config: SandboxConfig | None = None, per_interpreter_mb: int = PER_INTERPRETER_MB) -> HostCapacity:
    config = config or SandboxConfig()
    bounds: dict[str, int] = {}
    avail = _meminfo_mb("MemAvailable")
    if avail is not None:
        bounds["memory"] = int(avail * _MEMORY_SHARE) // per_interpreter_mb
    soft_fds, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft_fds != resource.RLIM_INFINITY:
        bounds["file descriptors"] = max(0, soft_fds - _open_fds() - _RESERVE_FDS) // FDS_PER_INTERPRETER
    # Every interpreter may run up to max_processes tasks (its RLIMIT_NPROC).
    task_limits = [v for v in (_read_int("/proc/sys/kernel/pid_max"), _read_int("/proc/sys/kernel/threads-max"))
                   if v]
    if task_limits:
        bounds["pids"] = max(0, min(task_limits) - _tasks_now()) // config.max_processes
    if os.geteuid() == 0 and config.uid is None:
        bounds["sandbox uids"] = config.uid_range[1] - config.uid_range[0]
    else:  # one uid for all: the host user's RLIMIT_NPROC is shared by every interpreter
        soft_nproc, _ = resource.getrlimit(resource.RLIMIT_NPROC)
        if soft_nproc != resource.RLIM_INFINITY and os.geteuid() != 0:
            bounds["user processes"] = max(0, soft_nproc - _tasks_now()) // config.max_processes
    if not bounds:
        return HostCapacity(live=64, bounds={}, binding="nothing measurable (default 64)")
    binding = min(bounds, key=bounds.get)
    return HostCapacity(live=max(1, bounds[binding]), bounds=bounds, binding=binding)
