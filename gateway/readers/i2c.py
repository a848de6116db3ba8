"""I2C readers: one thread per bus, polling each of its chips when due.

Chips on one bus take turns anyway: a bus carries one transaction at a time.
So each bus has one thread (`BusPoller`) that sleeps until the next device is
due and reads every device due at that instant, one driver call (one
conversion and its burst read) each. Devices sharing an interval fall on the
same slot of the interval grid, so ten sensors at 1 s cost one wake-up a
second, not ten; a slow or failing chip delays the others on its bus by no
more than its own transaction, and never those on another bus.

Each device keeps its own `I2CReader` (a `PolledDevice`: schedule, backoff,
health), which starts, stops and reports like any other reader through the
`DeviceRunner` interface, without a thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from gateway.catalog.spec import DeviceSpec, I2CBus, I2CDriver
from gateway.config.model import I2CDevice
from gateway.readers.base import PolledDevice, ReaderContext
from gateway.wakeup import Wakeup

log = logging.getLogger("gateway.readers")


class OpenBus(I2CBus, Protocol):
    """An opened /dev/i2c-N (`smbus2.SMBus`, or the simulator's bus)."""

    def close(self) -> None: ...


class BusPoller:
    """The thread of one I2C bus: polls its devices in due order, never dies."""

    def __init__(self, bus: int) -> None:
        self.bus = bus
        self._cond = threading.Condition()  # guards the schedule; wait_idle waits on it
        self._wakeup = Wakeup()  # the thread sleeps on this until its next slot
        self._due: dict[I2CReader, float] = {}
        self._current: I2CReader | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.error: BaseException | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def add(self, reader: I2CReader) -> None:
        with self._cond:
            self._due[reader] = reader.next_slot(time.monotonic())
            if not self.alive:
                self._closed = False
                self._thread = threading.Thread(target=self._main, name=f"i2c-bus-{self.bus}",
                                                daemon=True)
                self._thread.start()
        self._wakeup.set()  # it may be due before the slot the thread sleeps until

    def remove(self, reader: I2CReader) -> None:
        """Unschedule `reader` (a poll under way finishes first; see `wait_idle`)."""
        with self._cond:
            self._due.pop(reader, None)
            self._cond.notify_all()
        self._wakeup.set()

    def has(self, reader: I2CReader) -> bool:
        with self._cond:
            return reader in self._due or self._current is reader

    def wait_idle(self, reader: I2CReader, timeout: float | None) -> bool:
        """True once `reader` is neither scheduled nor being polled."""
        with self._cond:
            return self._cond.wait_for(
                lambda: reader not in self._due and self._current is not reader, timeout
            )

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        from gateway.threadguard import run_guarded

        try:
            run_guarded(f"i2c bus {self.bus} poller", self._loop, wait=self._wait_closed)
        except BaseException as exc:
            self.error = exc
            log.critical("i2c bus %d poller died: %r", self.bus, exc, exc_info=True)
            raise

    def _wait_closed(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._closed, timeout)

    def _loop(self) -> None:
        cond = self._cond
        while True:
            with cond:
                if self._closed:
                    return
                now = time.monotonic()
                ready = sorted((t, r.name, r) for r, t in self._due.items() if t <= now)
                nxt = None if ready else min(self._due.values(), default=None)
            if not ready:
                # add/remove/close set the wake-up after changing the schedule: one that
                # comes after the look above leaves it set, and this returns at once.
                self._wakeup.wait(None if nxt is None else nxt - now)
                continue
            for _, _, reader in ready:
                with cond:
                    if reader not in self._due:
                        continue  # stopped meanwhile
                    self._current = reader
                nxt = time.monotonic() + reader.interval
                try:
                    nxt = reader.poll_once()
                except Exception as exc:  # poll_once counts its device's faults; not this
                    log.exception("%s: poll failed unexpectedly", reader.name)
                    reader.ctx.crashed(exc)
                finally:
                    with cond:
                        self._current = None
                        if reader in self._due:
                            self._due[reader] = nxt
                        cond.notify_all()


class I2CBuses:
    """Opens each bus once; hands out its object, its lock and its poller thread."""

    def __init__(self, opener: Callable[[int], OpenBus] | None = None) -> None:
        self._opener = opener or _open_smbus
        self._buses: dict[int, OpenBus] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._pollers: dict[int, BusPoller] = {}
        self._guard = threading.Lock()

    def lock(self, bus: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(bus, threading.Lock())

    def poller(self, bus: int) -> BusPoller:
        with self._guard:
            p = self._pollers.get(bus)
            if p is None:
                p = self._pollers[bus] = BusPoller(bus)
            return p

    def get(self, bus: int) -> OpenBus:
        """The bus object; raises OSError when /dev/i2c-N cannot be opened (retried)."""
        with self._guard:
            b = self._buses.get(bus)
            if b is None:
                b = self._opener(bus)
                self._buses[bus] = b
            return b

    def close(self) -> None:
        with self._guard:
            pollers = list(self._pollers.values())
        for p in pollers:
            p.close()
        with self._guard:
            for b in self._buses.values():
                b.close()
            self._buses.clear()


def _open_smbus(bus: int) -> OpenBus:
    from smbus2 import SMBus

    return SMBus(bus)


class I2CReader(PolledDevice):
    """One chip: its driver, schedule, backoff and health, polled by its bus's thread.

    A `DeviceRunner` without a thread of its own: `start` schedules it on its bus's
    `BusPoller`, `stop` unschedules it, `join` waits until no poll of it is under way.
    The bus lock still guards each driver call, for anything else that talks to
    the bus (`edge-gateway scan`, a reader of another kind on the same bus).
    """

    def __init__(self, cfg: I2CDevice, spec: DeviceSpec, ctx: ReaderContext, buses: I2CBuses) -> None:
        super().__init__(cfg.name, ctx, cfg.interval)
        assert spec.make_driver is not None
        self.cfg = cfg
        self.spec = spec
        self.buses = buses
        self.bus_lock = buses.lock(cfg.bus)
        self.poller = buses.poller(cfg.bus)
        self.driver: I2CDriver | None = None
        #: Set while stopped (`edge-gateway test` waits on it between polls of its own).
        self.stop_event = threading.Event()
        self._stopped = False

    # Lifecycle: scheduled on the bus's thread instead of a thread of its own.
    def start(self) -> None:
        self._stopped = False
        self.stop_event.clear()
        self.poller.add(self)

    def stop(self) -> None:
        self.stop_event.set()
        self.poller.remove(self)

    def join(self, timeout: float | None = None) -> bool:
        if not self.poller.wait_idle(self, timeout):
            return False
        if not self._stopped:
            self._stopped = True
            self._reset()
            self.ctx.health.state = "stopped"
        return True

    @property
    def alive(self) -> bool:
        return self.poller.alive and self.poller.has(self)

    # The device.
    def open(self) -> None:
        bus = self.buses.get(self.cfg.bus)
        assert self.spec.make_driver is not None
        with self.bus_lock:
            self.driver = self.spec.make_driver(bus, self.cfg)

    def poll(self) -> dict[str, Any]:
        assert self.driver is not None
        with self.bus_lock:
            return self.driver.read()

    def close(self) -> None:
        self.driver = None
