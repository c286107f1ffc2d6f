"""SandboxPool: cheap episode starts (pre-spawned interpreters), concurrent batches of cells, and a cap
on live interpreters so that a host that cannot hold them all queues episodes instead of failing.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from score_distill.sandbox import uids
from score_distill.sandbox.capacity import host_capacity
from score_distill.sandbox.config import SandboxConfig
from score_distill.sandbox.process import ChildProcess
from score_distill.sandbox.sandbox import _LIVE, ExecResult, Sandbox, ToolFn
from score_distill.trajectory import ToolCall

log = logging.getLogger(__name__)
_WAIT_LOG_S = 60.0  # while an episode waits for a free interpreter, say so this often
# The host ran out of something while starting an interpreter: wait for one to close, don't fail.
_RESOURCE_ERRNOS = {errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ENOSPC}


class PoolFull(RuntimeError):
    """new(block=False) found no free interpreter slot."""


class SandboxPool:
    """``max_live``: most interpreters alive at once (spares included); None: what ``host_capacity`` says.

    At the cap, ``new()`` waits until an episode closes its sandbox (``has_room()`` says whether it would
    wait). When the host refuses a new interpreter below the cap (no memory, pids or fds left), the cap is
    lowered to what is live and the episode waits too; only with nothing live to wait for is it an error.
    """

    def __init__(self, config: SandboxConfig | None = None, max_workers: int = 4, warm: int = 2,
                 max_live: int | None = None):
        self.config = config or SandboxConfig()
        self.max_workers = max_workers
        if max_live is None:
            cap = host_capacity(self.config)
            max_live, self.capacity_note = cap.live, cap.describe()
        else:
            self.capacity_note = f"{max_live} live interpreters (max_live)"
        if max_live < 1:
            raise ValueError(f"max_live must be at least 1, got {max_live}")
        self.max_live = max_live
        self.warm = min(warm, max(0, max_live - 1))  # spares never take the last slot from an episode
        self._spare: list[tuple[ChildProcess, uids.UidLease | None]] = []
        self._owned: list[Sandbox] = []
        self._starting = 0  # slots reserved by interpreters being started
        self._cond = threading.Condition()
        self._refilling = False
        self._refill_thread: threading.Thread | None = None
        self._closed = False
        self.waits = 0  # how many new() calls had to wait for a slot (benchmarks report it)
        self._said_full = False
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sandbox")
        _POOLS.add(self)
        self._refill_async()

    # -- capacity --------------------------------------------------------------------------------
    def live(self) -> int:
        """Interpreters alive or starting: episodes' sandboxes, spares, starts in progress."""
        with self._cond:
            return self._live_locked()

    def _live_locked(self) -> int:
        self._owned = [s for s in self._owned if not s.closed]
        return len(self._owned) + len(self._spare) + self._starting

    def has_room(self) -> bool:
        """Whether new() would return without waiting for another episode to close.

        A caller that admits episodes from one thread asks this first: waiting in new() there would
        wait for itself. It queues the episode instead (score_distill.agent.loop does).
        """
        with self._cond:
            room = bool(self._spare) or self._live_locked() < self.max_live
            if not room and not self._said_full:
                self._said_full = True
                log.warning("sandbox pool: all %s are in use; further episodes queue until one closes",
                            self.capacity_note)
            return room

    def _released(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _new_child(self) -> tuple[ChildProcess, uids.UidLease | None]:
        lease = uids.acquire(self.config.uid_range) if os.geteuid() == 0 and self.config.uid is None else None
        try:
            uid = self.config.uid if self.config.uid is not None else (lease.uid if lease else None)
            return ChildProcess(self.config, uid), lease
        except BaseException:
            if lease:
                lease.release()
            raise

    @staticmethod
    def _host_refused(e: BaseException) -> bool:
        if isinstance(e, OSError) and e.errno in _RESOURCE_ERRNOS:
            return True
        text = str(e)
        return isinstance(e, RuntimeError) and ("no free sandbox uid" in text or "failed to start" in text)

    # -- spares ----------------------------------------------------------------------------------
    def _refill(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._closed or len(self._spare) >= self.warm or self._live_locked() >= self.max_live - 1:
                        return
                    self._starting += 1
                try:
                    child = self._new_child()
                except Exception as e:  # spares are an optimisation: new() starts (and reports) its own
                    log.debug("sandbox pool: starting a spare interpreter failed: %s", e)
                    return
                finally:
                    with self._cond:
                        self._starting -= 1
                with self._cond:
                    if self._closed:
                        child[0].close()
                        if child[1]:
                            child[1].release()
                        return
                    self._spare.append(child)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._refilling = False

    def _refill_async(self) -> None:
        with self._cond:
            if self._refilling or self._closed or self.warm <= 0:
                return
            self._refilling = True
        self._refill_thread = threading.Thread(target=self._refill, name="sandbox-refill", daemon=True)
        self._refill_thread.start()

    # -- episodes --------------------------------------------------------------------------------
    def _take_slot(self, block: bool) -> tuple[ChildProcess, uids.UidLease | None] | None:
        """A spare interpreter, or None with a slot reserved for starting one; waits at the cap."""
        t0 = last_log = time.monotonic()
        waited = False
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("pool is closed")
                if self._spare:
                    return self._spare.pop()
                if self._live_locked() < self.max_live:
                    self._starting += 1
                    return None
                if not block:
                    raise PoolFull(f"sandbox pool is full: {self.capacity_note}")
                if not waited:
                    waited = True
                    self.waits += 1
                    log.warning("sandbox pool: all %s are in use; the new episode waits for one to close",
                                self.capacity_note)
                self._cond.wait(timeout=5.0)
                if time.monotonic() - last_log > _WAIT_LOG_S:
                    last_log = time.monotonic()
                    log.warning("sandbox pool: an episode has waited %.0f s for a free interpreter (%s)",
                                last_log - t0, self.capacity_note)

    def new(self, tools: dict[str, ToolFn] | None = None, block: bool = True) -> Sandbox:
        """A Sandbox for one episode, from a pre-spawned interpreter when one is ready.

        At the live cap it waits for another episode to close (block=False: raises PoolFull instead).
        """
        while True:
            spare = self._take_slot(block)
            if spare is not None:
                child, lease = spare
                break
            try:
                child, lease = self._new_child()
            except Exception as e:
                with self._cond:
                    self._starting -= 1
                    others = self._live_locked()
                    if not self._host_refused(e) or others == 0:
                        raise
                    # The host holds no more: queue behind the episodes that are live now.
                    self.max_live = others
                    self.capacity_note = f"{others} live interpreters (the host refused one more: {e})"
                    self.warm = min(self.warm, max(0, others - 1))
                log.warning("sandbox pool: %s; new episodes wait for a free one", self.capacity_note)
                continue
            with self._cond:
                self._starting -= 1
            break
        try:
            sb = Sandbox(self.config, tools, _child=child, _lease=lease, _on_close=self._released)
        except BaseException:
            self._released()
            raise
        with self._cond:
            self._owned.append(sb)
        self._refill_async()
        return sb

    def submit(self, sb: Sandbox, code: str, recorded: Sequence[ToolCall] | None = None) -> Future[ExecResult]:
        """Run one cell on the pool's workers; its result when the future is done."""
        return self._executor.submit(sb.run, code, recorded)

    def run_batch(self, items: Sequence[tuple[Sandbox, str, Sequence[ToolCall] | None]]) -> list[ExecResult]:
        """Run cells of different sandboxes concurrently; results in input order."""
        futures = [self.submit(sb, code, recorded) for sb, code, recorded in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            spare, self._spare = self._spare, []
            owned, self._owned = self._owned, []
            self._cond.notify_all()
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
