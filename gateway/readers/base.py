"""What every reader shares: the daemon's context, health, backoff; a polled device; a thread.

- `ReaderContext`: what a reader gets from the daemon (where readings go, health).
- `PolledDevice`: a device polled on a drift-free schedule, with no thread of
  its own; `PolledReader` runs one on a thread of its own (I2C chips share
  their bus's thread instead, see `i2c.py`).
- `Reader`: a named thread with a stop event (serial readers).

A reader never dies from its device: every exception from a poll is counted,
logged once per state change (failing / recovered) and retried with capped
exponential backoff. An exception that escapes anyway (a bug) is recorded in
`error` and logged, so the supervisor sees the thread is gone and why.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from gateway.device_hints import hint_for
from gateway.drivers.errors import DriverError, NoNewData
from gateway.health import DeviceHealth
from gateway.reading import Reading, publishable
from gateway.slots import SlotsRecord

log = logging.getLogger("gateway.readers")

#: Report-on-change: (values, ts) -> the values to publish, or None to skip this reading.
PublishFilter = Callable[[dict[str, Any], float], dict[str, Any] | None]


class SimulatedHardware(Protocol):
    """What readers use of the simulator (hardware_sim.world.SimWorld) in simulate mode.
    Readers never import it (the import contract): the daemon hands it in."""

    @property
    def extras(self) -> Mapping[str, Any]:
        """Simulated serial devices by device name (`.path`: the pty to open)."""

    @property
    def sysfs(self) -> Any:
        """The simulated sysfs tree (`.root`, `.read_text(path)`), or None."""

    @property
    def gpio_lines(self) -> Mapping[str, Any]:
        """Simulated GPIO lines by device name (edge sources)."""


def _nothing() -> None:
    pass


class ReaderContext(SlotsRecord):
    """What a reader needs from the daemon."""

    __slots__ = ("put", "health", "on_health_change", "simulate", "sim", "state_dir",
                 "publish_filter")

    def __init__(self, put: Callable[[Reading], bool], health: DeviceHealth,
                 on_health_change: Callable[[], None] = _nothing, simulate: bool = False,
                 sim: SimulatedHardware | None = None, state_dir: Path | None = None,
                 publish_filter: PublishFilter | None = None) -> None:
        self.put = put
        self.health = health
        self.on_health_change = on_health_change
        self.simulate = simulate
        #: The simulator in simulate mode.
        self.sim = sim
        #: Where readers keep state across restarts (pulse totals): the spool's directory.
        self.state_dir = state_dir
        #: Optional report-on-change filter: returns the values to publish, or None to skip.
        self.publish_filter = publish_filter

    def emit(self, values: dict[str, Any], ts: float | None = None) -> bool:
        """Hand one reading to the outbox (after the publish policy, if any).

        Every reading of every device passes here, so this is where the envelope
        rule holds (`reading.publishable`): device keys never collide with `seq`,
        `ts` or `absent`, and unusable values are listed under `absent`.
        """
        when = time.time() if ts is None else ts
        h = self.health
        h.readings += 1
        values, renamed = publishable(values)
        if renamed:
            h.counters["renamed_keys"] = h.counters.get("renamed_keys", 0) + renamed
        if self.publish_filter is not None:
            kept = self.publish_filter(values, when)
            if kept is None:
                return True
            values = kept
        return self.put(Reading(h.name, values, when))

    def succeeded(self) -> None:
        h = self.health
        h.last_success = time.time()
        if h.state != "ok":
            if h.state == "failing":
                log.info("%s: recovered after %d errors", h.name, h.consecutive_errors)
            else:
                log.info("%s: ok", h.name)
            h.state = "ok"
            h.consecutive_errors = 0
            self.on_health_change()

    def crashed(self, exc: BaseException) -> None:
        """An exception that is not a device fault (a bug in a decoder or driver): counted
        in health like a fault, and apart as `unexpected_errors`. The thread goes on."""
        counters = self.health.counters
        counters["unexpected_errors"] = counters.get("unexpected_errors", 0) + 1
        self.failed(exc)

    def failed(self, exc: BaseException) -> None:
        h = self.health
        h.total_errors += 1
        h.consecutive_errors += 1
        h.last_error = describe(exc)
        h.last_error_at = time.time()
        if h.state != "failing":
            log.warning("%s: failing: %s (retrying with backoff)", h.name, h.last_error)
            h.state = "failing"
            self.on_health_change()


def describe(exc: BaseException) -> str:
    """One line for health and the log; with what to do when a device node cannot be
    opened (I2C not enabled, not in group i2c/dialout)."""
    advice = hint_for(exc)
    tail = f": {advice}" if advice else ""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return (f"{name}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
                + tail)
    return f"{type(exc).__name__}: {exc}{tail}"


class Backoff:
    """Capped exponential backoff: base, 2·base, 4·base, ... up to cap."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = min(base, cap)
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return float(min(self.cap, self.base * 2.0 ** min(self.failures - 1, 30)))

    def reset(self) -> None:
        self.failures = 0


class Reader:
    """A named thread with a stop event. Subclasses implement `run_loop`."""

    def __init__(self, name: str, ctx: ReaderContext) -> None:
        self.name = name
        self.ctx = ctx
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def heartbeat(self) -> float:
        return self.ctx.health.heartbeat

    def beat(self) -> None:
        self.ctx.health.heartbeat = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"reader-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (returns at once; `join` waits)."""
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stall_allowance(self) -> float:
        """How long this reader may rightly go without a beat (see `DeviceRunner`)."""
        return 0.0

    def _main(self) -> None:
        from gateway.threadguard import run_guarded

        try:
            run_guarded(f"reader {self.name}", self.run_loop, wait=self.stop_event.wait,
                        on_error=self.after_crash)
        except BaseException as exc:
            self.error = exc
            log.critical("reader %s died: %r", self.name, exc, exc_info=True)
            raise
        finally:
            try:
                self.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken device may fail too
                log.debug("%s: close failed: %s", self.name, exc)
            self.ctx.health.state = "stopped"

    def run_loop(self) -> None:
        raise NotImplementedError

    def after_crash(self, exc: Exception) -> None:
        """`run_loop` raised (a bug): count it; the loop starts over on a fresh device."""
        self.ctx.crashed(exc)
        self.close()

    def close(self) -> None:
        """Release the device (called once when the thread ends)."""


class PolledDevice:
    """A device polled on a drift-free schedule aligned to its interval: no thread of its own.

    Polls fall on multiples of `interval` on the monotonic clock, so devices
    sharing an interval are read together and their readings share a commit.
    A slow poll skips the slots it missed instead of bursting to catch up.

    It holds the schedule, the backoff and the health of one device; what runs it
    is separate: a thread of its own (`PolledReader`) or a thread it shares (the
    I2C chips of one bus, `gateway.readers.i2c`). Subclasses implement `poll`
    (and `open`/`close` if the device needs them).
    """

    def __init__(self, name: str, ctx: ReaderContext, interval: float,
                 backoff_cap: float | None = None) -> None:
        self.name = name
        self.ctx = ctx
        self.interval = interval
        cap = backoff_cap if backoff_cap is not None else max(interval, 0.05)
        self.backoff = Backoff(base=min(0.1, cap), cap=cap)
        self.opened = False

    @property
    def heartbeat(self) -> float:
        return self.ctx.health.heartbeat

    def beat(self) -> None:
        self.ctx.health.heartbeat = time.monotonic()

    @property
    def stall_allowance(self) -> float:
        # It beats after each poll, after a failure only once its backoff (capped,
        # possibly above the interval) has run out.
        return max(self.interval, self.backoff.cap)

    def open(self) -> None:
        """Open or initialise the device (may raise; retried with backoff)."""

    def poll(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device."""

    def measured_at(self, started: float) -> float:
        """The reading's `ts`: when the poll started, unless the device knows better."""
        return started

    def next_slot(self, now: float) -> float:
        iv = self.interval
        return (int(now / iv) + 1) * iv

    def poll_once(self) -> float:
        """One poll (opening the device first if needed). Returns when the next is due.

        Never raises: a device fault is counted, logged once per state change and
        retried with backoff; anything else is logged with its traceback too.
        """
        ctx = self.ctx
        try:
            if not self.opened:
                self.open()
                self.opened = True
            started = time.time()
            values = self.poll()
            ts = self.measured_at(started)
        except NoNewData as exc:
            log.debug("%s: %s", self.name, exc)  # nothing this slot; the device is fine
            now = time.monotonic()
            due = self.next_slot(now)
            if exc.retry_in is not None:  # something new is due before the next slot
                due = min(due, now + max(0.0, exc.retry_in))
        except Exception as exc:
            if not isinstance(exc, OSError | ValueError | TimeoutError) and not _is_device_error(exc):
                ctx.crashed(exc)
                log.error("%s: unexpected error", self.name, exc_info=True)
            else:
                ctx.failed(exc)
            self._reset()
            due = time.monotonic() + self.backoff.next_delay()
        else:
            ctx.succeeded()
            self.backoff.reset()
            try:
                ctx.emit(values, ts)
            except Exception:
                log.exception("%s: reading could not be handed to the outbox", self.name)
            due = self.next_slot(time.monotonic())
        self.beat()
        return due

    def after_crash(self, exc: Exception) -> None:
        self.ctx.crashed(exc)
        self._reset()

    def _reset(self) -> None:
        if self.opened:
            try:
                self.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("%s: close after error failed: %s", self.name, exc)
        self.opened = False


class PolledReader(PolledDevice, Reader):
    """A polled device with a thread of its own (a Modbus slave, a test's ticker)."""

    def __init__(self, name: str, ctx: ReaderContext, interval: float,
                 backoff_cap: float | None = None) -> None:
        PolledDevice.__init__(self, name, ctx, interval, backoff_cap)
        Reader.__init__(self, name, ctx)

    def run_loop(self) -> None:
        stop = self.stop_event
        due = self.next_slot(time.monotonic())
        while True:
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            if stop.is_set():
                return
            due = self.poll_once()


def _is_device_error(exc: BaseException) -> bool:
    return isinstance(exc, DriverError)
