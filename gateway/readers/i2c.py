"""I2C readers: one thread per chip, one lock per bus.

Devices on one bus take turns through the bus lock for exactly one driver call
(one conversion and its burst read), so a slow or failing chip delays the
others by no more than its own transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gateway.catalog import DeviceSpec, I2CDriver
from gateway.config.model import I2CDevice
from gateway.readers.base import PolledReader, ReaderContext


class I2CBuses:
    """Opens each bus once and hands out (bus, lock) pairs."""

    def __init__(self, opener: Callable[[int], Any] | None = None) -> None:
        self._opener = opener or _open_smbus
        self._buses: dict[int, Any] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, bus: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(bus, threading.Lock())

    def get(self, bus: int) -> Any:
        """The bus object; raises OSError when /dev/i2c-N cannot be opened (retried)."""
        with self._guard:
            b = self._buses.get(bus)
            if b is None:
                b = self._opener(bus)
                self._buses[bus] = b
            return b

    def close(self) -> None:
        with self._guard:
            for b in self._buses.values():
                b.close()
            self._buses.clear()


def _open_smbus(bus: int) -> Any:
    from smbus2 import SMBus

    return SMBus(bus)


class I2CReader(PolledReader):
    def __init__(self, cfg: I2CDevice, spec: DeviceSpec, ctx: ReaderContext, buses: I2CBuses) -> None:
        super().__init__(cfg.name, ctx, cfg.interval)
        assert spec.make_driver is not None
        self.cfg = cfg
        self.spec = spec
        self.buses = buses
        self.bus_lock = buses.lock(cfg.bus)
        self.driver: I2CDriver | None = None

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
