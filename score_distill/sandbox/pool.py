"""SandboxPool: cheap episode starts (pre-spawned interpreters) and concurrent batches of cells."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from score_distill.sandbox import uids
from score_distill.sandbox.config import SandboxConfig
from score_distill.sandbox.process import ChildProcess
from score_distill.sandbox.sandbox import _LIVE, ExecResult, Sandbox, ToolFn
from score_distill.trajectory import ToolCall


class SandboxPool:
    def __init__(self, config: SandboxConfig | None = None, max_workers: int = 4, warm: int = 2):
        self.config = config or SandboxConfig()
        self.max_workers = max_workers
        self.warm = warm
        self._spare: list[tuple[ChildProcess, uids.UidLease | None]] = []
        self._owned: list[Sandbox] = []
        self._lock = threading.Lock()
        self._refilling = False
        self._refill_thread: threading.Thread | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sandbox")
        _POOLS.add(self)
        self._refill_async()

    def _new_child(self) -> tuple[ChildProcess, uids.UidLease | None]:
        lease = uids.acquire(self.config.uid_range) if os.geteuid() == 0 and self.config.uid is None else None
        try:
            uid = self.config.uid if self.config.uid is not None else (lease.uid if lease else None)
            return ChildProcess(self.config, uid), lease
        except BaseException:
            if lease:
                lease.release()
            raise

    def _refill(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._spare) >= self.warm:
                        return
                child = self._new_child()
                with self._lock:
                    if self._closed:
                        child[0].close()
                        if child[1]:
                            child[1].release()
                        return
                    self._spare.append(child)
        finally:
            with self._lock:
                self._refilling = False

    def _refill_async(self) -> None:
        with self._lock:
            if self._refilling or self._closed or self.warm <= 0:
                return
            self._refilling = True
        self._refill_thread = threading.Thread(target=self._refill, name="sandbox-refill", daemon=True)
        self._refill_thread.start()

    def new(self, tools: dict[str, ToolFn] | None = None) -> Sandbox:
        """A Sandbox for one episode, from a pre-spawned interpreter when one is ready."""
        with self._lock:
            if self._closed:
                raise RuntimeError("pool is closed")
            spare = self._spare.pop() if self._spare else None
        child, lease = spare if spare else self._new_child()
        sb = Sandbox(self.config, tools, _child=child, _lease=lease)
        with self._lock:
            self._owned = [s for s in self._owned if not s.closed] + [sb]
        self._refill_async()
        return sb

    def run_batch(self, items: Sequence[tuple[Sandbox, str, Sequence[ToolCall] | None]]) -> list[ExecResult]:
        """Run cells of different sandboxes concurrently; results in input order."""
        futures = [self._executor.submit(sb.run, code, recorded) for sb, code, recorded in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            spare, self._spare = self._spare, []
            owned, self._owned = self._owned, []
        self._executor.shutdown(wait=True)
        if self._refill_thread is not None:  # it closes what it spawns once it sees _closed
            self._refill_thread.join(timeout=self.config.start_timeout_s)
        for child, lease in spare:
            child.close()
            if lease:
                lease.release()
        for sb in owned:
            sb.close()
        _POOLS.discard(self)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_POOLS: set[SandboxPool] = set()


@atexit.register
def _close_everything() -> None:
    # No leaked interpreters or workdirs when a program forgets close().
    for pool in list(_POOLS):
        pool.close()
    for sb in list(_LIVE):
        sb.close()
