"""Per-sandbox user ids (root only) and killing everything a sandbox uid still runs.

Each live sandbox gets its own uid so that RLIMIT_NPROC is per episode (a fork bomb in one episode
cannot starve another), episodes cannot read each other's workdirs, and every process the model
started -- even one that left the process group with setsid() -- can be found and killed by uid.
Exclusivity across host processes (several test runs on one machine) comes from an flock per uid.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
import time

# uids are machine-wide, so the lock directory must not depend on a process's TMPDIR.
_LOCK_DIR = "/tmp/score-distill-sandbox-uids" if os.path.isdir("/tmp") else os.path.join(tempfile.gettempdir(),
                                                                                       "score-distill-sandbox-uids")


class UidLease:
    """Holds one uid until release(); the flock also dies with the host process."""

    def __init__(self, uid: int, fd: int | None):
        self.uid, self._fd = uid, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def acquire(uid_range: tuple[int, int]) -> UidLease:
    os.makedirs(_LOCK_DIR, mode=0o700, exist_ok=True)
    start, end = uid_range
    for uid in range(start, end):
        fd = os.open(os.path.join(_LOCK_DIR, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        kill_uid(uid)  # leftovers of a host that died without cleaning up
        _remove_stale_workdirs(uid)
        return UidLease(uid, fd)
    raise RuntimeError(f"no free sandbox uid in range {start}..{end - 1}: too many live sandboxes")


def _remove_stale_workdirs(uid: int) -> None:
    """Workdirs of this uid whose host died (we hold the uid's lock, so none is in use)."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        path = os.path.join(base, name)
        try:
            if name.startswith("sdsbx-") and os.lstat(path).st_uid == uid and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def pids_of_uid(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            # Zombies are dead already; their parent (or init) reaps them.
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
                pids.append(int(name))
        except (OSError, ValueError, KeyError):
            continue  # exited meanwhile
    return pids


def kill_uid(uid: int, timeout_s: float = 5.0) -> int:
    """SIGKILL every process of ``uid`` until none is left (a fork bomb keeps forking). Returns rounds."""
    if uid == 0 or uid == os.getuid():
        raise ValueError("refusing to kill all processes of the host's own uid")
    deadline = time.monotonic() + timeout_s
    rounds = 0
    while True:
        pids = pids_of_uid(uid)
        if not pids or time.monotonic() > deadline:
            return rounds
        rounds += 1
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)
