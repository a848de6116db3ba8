"""`buffer.sync: full` without the fsync in the spooler's path.

With `PRAGMA synchronous=FULL` every COMMIT ends in an fsync of the WAL, inside the
spooler thread: readings that arrive meanwhile wait in memory until it returns (on
this machine p90 1.8 ms, p99 5 ms; on an SD card far longer), and only then are they
committed and handed to the publisher. So the spool commits with `synchronous=NORMAL`
(SQLite's WAL stays consistent: it syncs before and after every checkpoint) and this
thread fdatasyncs the WAL after each commit instead. A commit's frames follow every
earlier one in the file, so one fdatasync makes every commit before it durable;
commits made while one runs share the next.

When a reading is on disk does not change: before, readings arriving during an fsync
waited in memory for the next commit and its fsync; now they are committed into the
page cache at once and made durable by the next fdatasync. What changes is that they
are handed to the publisher without waiting for the disk.

A failed fdatasync (EIO, ENOSPC) is logged and reported to the owner, which goes
back to synchronous=FULL: from then on a commit that cannot reach the disk fails
inside the transaction, and the spool's tested failure path (rollback, retry, state)
takes over.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from gateway.wakeup import Wakeup

log = logging.getLogger("gateway.spool")

#: An idle syncer checks this often (seconds) whether its spool still exists.
IDLE_CHECK = 60.0


class WalSyncer:
    """A thread that fdatasyncs one spool's WAL file whenever a commit asks it to."""

    def __init__(self, wal: Path, on_error: weakref.WeakMethod[Callable[[OSError], None]]
                 ) -> None:
        self.wal = wal
        # Weak: a spool dropped without close() (a simulated crash) is not kept alive by
        # its syncer, and the syncer ends once it has been idle for IDLE_CHECK after that.
        self._on_error = on_error
        self.syncs = 0  # fdatasyncs done (each may cover several commits)
        self.errors = 0  # fdatasyncs that failed
        self.thread_errors = 0  # exceptions from a round of the thread's own work
        #: Told of each of those (the outbox counts it in health's thread errors).
        self.on_thread_error: Callable[[], None] | None = None
        self._cond = threading.Condition()  # guards the counts; `wait` waits on it
        self._wakeup = Wakeup()  # the thread sleeps on it between syncs
        self._asked = 0  # commits that asked for a sync
        self._done = 0  # commits covered by the syncs done (or failed: reported)
        self._closed = False
        # The WAL stays open between syncs (an open and a close fewer per commit, each a
        # syscall and a GIL hand-off); `reopen` marks it stale when the spool's
        # connections are opened anew (the file may be another one then).
        self._fd: int | None = None
        self._stale = False
        self._thread = threading.Thread(target=self._main, name="spool-syncer", daemon=True)
        self._thread.start()

    def ask(self) -> int:
        """A commit just returned: make it durable. Returns its ticket (see `wait`)."""
        with self._cond:
            self._asked += 1
            ticket = self._asked
        self._wakeup.set()
        return ticket

    def wait(self, ticket: int | None = None, timeout: float | None = None) -> bool:
        """Wait until the commit with `ticket` (default: every commit so far) is synced."""
        with self._cond:
            want = self._asked if ticket is None else ticket
            return self._cond.wait_for(lambda: self._done >= want or not self.alive(),
                                       timeout) and self._done >= want

    def reopen(self) -> None:
        """The spool opened its files anew: open the WAL again before the next sync."""
        self._stale = True

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Sync what is outstanding, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wakeup.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("spool syncer did not stop within %.1f s", timeout)

    def _main(self) -> None:
        from gateway.threadguard import run_guarded

        def stopped(seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while not self._closed:  # a commit's wake-up does not cut the pause short
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wakeup.wait(left)
            return True

        def count(exc: Exception) -> None:
            self.thread_errors += 1
            if self.on_thread_error is not None:
                self.on_thread_error()

        run_guarded("spool syncer", self._loop, wait=stopped, on_error=count)

    def _loop(self) -> None:
        while True:
            with self._cond:
                target = self._asked
                idle = target == self._done
                closed = self._closed
            if idle:
                if closed or self._on_error() is None:
                    self._drop_fd()
                    return  # closed (or the spool is gone), nothing outstanding
                # ask() and close() set the wake-up after their change: one that came
                # after the look above makes this return at once.
                self._wakeup.wait(IDLE_CHECK)
                continue
            try:
                self._sync()
            finally:
                # A failure is reported (the owner syncs inline from then on): waiters
                # are not kept waiting for a sync that will not come.
                with self._cond:
                    self._done = max(self._done, target)
                    self._cond.notify_all()

    def _drop_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _sync(self) -> None:
        if self._stale:
            self._stale = False
            self._drop_fd()
        if self._fd is None:
            try:
                self._fd = os.open(self.wal, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return  # no WAL (yet, or after the last connection closed): nothing to sync
            except OSError as exc:
                self._failed(exc)
                return
        try:
            os.fdatasync(self._fd)
            self.syncs += 1
        except OSError as exc:
            self._drop_fd()
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.errors += 1
        report = self._on_error()
        log.error("spool: fdatasync of %s failed (%s): commits since the last sync may "
                  "not survive a power cut; committing with an fsync in each transaction "
                  "from now on", self.wal, exc)
        if report is not None:
            report(exc)
