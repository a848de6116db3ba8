"""A simulated serial device on a real pseudo-terminal.

The device owns the pty master; the gateway opens the slave side with pyserial
exactly like /dev/ttyUSB0. A stable symlink (`.path`) points at the current
slave, like a udev `/dev/serial/by-id/...` link:

- unplug(): the pty is closed and the symlink removed (the reader's open port
  fails with EIO, as when a USB adapter is pulled);
- replug(): a new pty appears behind the same symlink.

One named thread per device waits in select() on the master and a wake-up pipe
until the next scheduled output: no busy waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import shutil
import tempfile
import threading
import time
import tty
import weakref
from collections.abc import Callable

log = logging.getLogger("hardware_sim.serial")


class PtyDevice:
    """Base: subclasses override `tick()` (periodic output) and/or `on_input()`."""

    def __init__(self, name: str, rate_hz: float | None = None, link_dir: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.rate_hz = rate_hz
        self.clock = clock
        self._dir = link_dir or tempfile.mkdtemp(prefix="sim-serial-")
        # A directory of its own is removed by close(), or, for a device dropped without
        # close() (a test that only asks it for sentences), when collected or at exit.
        self._remove_dir = None if link_dir else weakref.finalize(
            self, shutil.rmtree, self._dir, True)
        #: Stable path (a symlink to the current pty slave), as a by-id link would be.
        self.path = os.path.join(self._dir, name)
        self.tty_path: str | None = None
        self.silent = False
        self.counters: dict[str, int] = {}
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._main, name=f"sim-serial-{name}", daemon=True)
        self.error: BaseException | None = None
        self._closed = False
        self._plug()

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> PtyDevice:
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread, close the pty, remove the symlink (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5.0)
        with self._lock:
            self._unplug_locked()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._remove_dir is not None:
            self._remove_dir()

    def __enter__(self) -> PtyDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- unplug / replug ---------------------------------------------------------------
    @property
    def plugged(self) -> bool:
        return self._master is not None

    def unplug(self) -> None:
        with self._lock:
            self._unplug_locked()
        self._wake()

    def replug(self) -> None:
        with self._lock:
            if self._master is None:
                self._plug()
        self._wake()

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        fcntl.fcntl(master, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        fcntl.fcntl(slave, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        self._master, self._slave = master, slave
        self.tty_path = os.ttyname(slave)
        tmp = f"{self.path}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self.tty_path, tmp)
        os.replace(tmp, self.path)  # atomic: the link never dangles while plugged

    def _unplug_locked(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self.tty_path = None

    # -- I/O -----------------------------------------------------------------------------
    def write(self, data: bytes) -> int:
        """Send bytes to whoever has the port open. Drops (and counts) what does not fit."""
        with self._lock:
            if self._master is None:
                self._count("dropped_unplugged")
                return 0
            try:
                n = os.write(self._master, data)
            except BlockingIOError:
                self._count("dropped_full")
                return 0
            except OSError as exc:
                self._count("write_errors")
                log.debug("%s: write failed: %s", self.name, exc)
                return 0
        if n < len(data):
            self._count("dropped_full")
        return n

    def inject(self, data: bytes) -> int:
        """Fault injection: raw bytes (garbage, partial lines) straight onto the line."""
        return self.write(data)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- hooks ---------------------------------------------------------------------------
    def tick(self) -> bytes:
        """Periodic output (called rate_hz times a second)."""
        return b""

    def on_input(self, data: bytes) -> None:
        """Bytes the gateway wrote to the port."""

    # -- thread --------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc
            log.critical("simulated serial device %s died: %r", self.name, exc, exc_info=True)
            raise

    def _run(self) -> None:
        period = 1.0 / self.rate_hz if self.rate_hz else None
        due = time.monotonic() + (period or 0.0)
        while not self._stop.is_set():
            timeout = None if period is None else max(0.0, due - time.monotonic())
            with self._lock:
                master = self._master
            fds = [self._wake_r] if master is None else [self._wake_r, master]
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                continue  # the master was closed by unplug() while we waited
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            if master is not None and master in ready:
                self._read_master(master)
            if period is not None and time.monotonic() >= due:
                due += period
                if due < time.monotonic():  # fell behind (loaded machine): no burst
                    due = time.monotonic() + period
                out = self.tick()
                if out and not self.silent:
                    self.write(out)

    def _read_master(self, master: int) -> None:
        with self._lock:
            if self._master != master:
                return
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                return
            except OSError as exc:
                self._count("read_errors")
                log.debug("%s: read failed: %s", self.name, exc)
                return
        if data:
            self.on_input(data)
