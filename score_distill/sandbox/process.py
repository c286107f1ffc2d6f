"""Host-side handle on one isolated interpreter process: spawn, framed control pipe, output capture, kill."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import site
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from score_distill.sandbox import uids
from score_distill.sandbox.config import SandboxConfig

_HERE = Path(__file__).parent
# The child runs this source (stdlib only), so it needs no access to the repository.
_CHILD_SOURCE = (_HERE / "isolation.py").read_text() + "\n" + (_HERE / "interpreter.py").read_text()
MAX_FRAME = 16 * 1024 * 1024
_ENV_ALLOW = ("LC_ALL", "TZ")
_CHANNEL_BROKEN_STATUS = 70  # interpreter.py exits with it when its control pipe breaks


class ChannelError(Exception):
    """The child died, closed its control pipe, or wrote something that is not a frame."""


def _expose_paths() -> list[str]:
    """Directories the interpreter must still read after /root, /home are hidden: its own install."""
    # Only the install (stdlib, site-packages), not the host's sys.path: the repo stays hidden.
    cands = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    cands |= {os.path.realpath(p) for p in site.getsitepackages() if os.path.isdir(p)}
    cands = sorted(c for c in cands if c != "/")
    return [c for c in cands if not any(c != o and c.startswith(o.rstrip("/") + "/") for o in cands)]


def _child_env(workdir: str) -> dict[str, str]:
    # A minimal allowlist: no API keys, tokens or secrets ever reach model code.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update({k: os.environ[k] for k in _ENV_ALLOW if k in os.environ})
    return env


class ChildProcess:
    """One interpreter. Not thread-safe: a Sandbox drives it from one thread at a time."""

    def __init__(self, config: SandboxConfig, uid: int | None):
        self.config = config
        self.root = os.geteuid() == 0
        self.uid = uid if self.root else os.getuid()
        self.workdir = tempfile.mkdtemp(prefix="sdsbx-")
        if self.root:
            os.chown(self.workdir, self.uid, self.uid)
        os.chmod(self.workdir, 0o700)
        # Output capture: an unlinked O_APPEND file shared by fds 1 and 2 of the child, so stdout and
        # stderr interleave in write order, os.write(1, ...) is captured too, and RLIMIT_FSIZE caps it.
        fd, path = tempfile.mkstemp(prefix="sdsbx-out-")
        os.close(fd)
        self.out_fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        os.unlink(path)
        p2c_r, self._w = os.pipe()
        self._r, c2p_w = os.pipe()
        spec = {
            "workdir": self.workdir, "uid": self.uid, "gid": self.uid, "ctl_in": p2c_r, "ctl_out": c2p_w,
            "network": config.network, "socket_filter": config.socket_filter,
            "workdir_mb": config.workdir_mb, "hide": config.hide_paths,
            "expose": _expose_paths() + [self.workdir],
            "allowed_imports": config.allowed_imports,
            "limits": {"cpu_s": config.cpu_s, "as_bytes": config.memory_mb * 1024 * 1024,
                       "nproc": config.max_processes if self.root else None,
                       "fsize_bytes": config.max_file_mb * 1024 * 1024, "nofile": config.max_open_files},
        }
        self._buf = b""
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-u", "-c", _CHILD_SOURCE, json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=self.out_fd, stderr=self.out_fd, pass_fds=(p2c_r, c2p_w),
                start_new_session=True, env=_child_env(self.workdir), cwd=self.workdir)
        finally:
            os.close(p2c_r)
            os.close(c2p_w)
        self.report: dict = {}
        try:
            ready = self.recv(time.monotonic() + config.start_timeout_s)
        except (ChannelError, TimeoutError) as e:
            detail = self.read_output(0, 2000)[0]
            self.kill()
            self.cleanup()
            raise RuntimeError(f"sandbox interpreter failed to start ({e}): {detail}") from None
        self.report = ready.get("report", {})

    # -- control channel -------------------------------------------------------------------------
    def send(self, obj: dict) -> None:
        data = json.dumps(obj).encode()
        buf = struct.pack(">I", len(data)) + data
        try:
            while buf:
                buf = buf[os.write(self._w, buf):]
        except OSError as e:  # BrokenPipe: the child is gone or closed its end
            raise ChannelError(f"control pipe closed ({e.strerror})") from None

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            # poll, not select: with hundreds of live interpreters the host's fds pass FD_SETSIZE (1024).
            poller = select.poll()
            poller.register(self._r, select.POLLIN)
            if not poller.poll(max(1, int(left * 1000) + 1)):
                raise TimeoutError
            chunk = os.read(self._r, max(65536, n - len(self._buf)))
            if not chunk:
                raise ChannelError("control pipe closed")
            self._buf += chunk

    def recv(self, deadline: float) -> dict:
        self._fill(4, deadline)
        (n,) = struct.unpack(">I", self._buf[:4])
        if n > MAX_FRAME:
            raise ChannelError(f"control frame of {n} bytes (limit {MAX_FRAME}): channel corrupted")
        self._fill(4 + n, deadline)
        data, self._buf = self._buf[4:4 + n], self._buf[4 + n:]
        try:
            msg = json.loads(data)
        except ValueError:
            raise ChannelError("control frame is not JSON: channel corrupted") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ChannelError("control frame without a type: channel corrupted")
        return msg

    # -- output ----------------------------------------------------------------------------------
    def clear_output(self) -> None:
        os.ftruncate(self.out_fd, 0)

    def read_output(self, start: int, max_chars: int) -> tuple[str, int]:
        """(text up to max_chars, characters left out). Counts exactly up to a few MB, then estimates."""
        size = os.fstat(self.out_fd).st_size
        exact = size <= 4 * 1024 * 1024
        raw = os.pread(self.out_fd, size if exact else max_chars * 4 + 4, start)
        text = raw.decode("utf-8", "replace")
        if exact:
            return text[:max_chars], max(0, len(text) - max_chars)
        head = text[:max_chars]
        return head, size - len(head.encode("utf-8", "replace"))

    # -- lifecycle -------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group, then every process of the sandbox uid (setsid escapees)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.root and self.config.uid is None:
            uids.kill_uid(self.uid)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass

    def exit_description(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return "still running"
        if rc < 0:
            sig = signal.Signals(-rc).name
            hint = {"SIGXCPU": ": CPU time limit exceeded", "SIGSEGV": ": segmentation fault",
                    "SIGKILL": ": killed", "SIGXFSZ": ": file size limit exceeded"}.get(sig, "")
            return f"killed by {sig}{hint}"
        if rc == _CHANNEL_BROKEN_STATUS:
            return "the code closed or corrupted the sandbox's control channel"
        return f"exited with status {rc}"

    def cleanup(self) -> None:
        for fd in (self._r, self._w, self.out_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._r = self._w = self.out_fd = -1
        # rmtree is fd-based and does not follow symlinks the model planted.
        shutil.rmtree(self.workdir, ignore_errors=True)

    def close(self) -> None:
        self.kill()
        self.cleanup()
