"""Helpers for serial tests: a real ReaderContext collecting readings in a list."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from gateway.health import DeviceHealth
from gateway.readers.base import ReaderContext
from gateway.reading import Reading


class Collector:
    """The outbox side of a ReaderContext: keeps readings, wakes waiters."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self._cond = threading.Condition()

    def put(self, reading: Reading) -> bool:
        with self._cond:
            self.readings.append(reading)
            self._cond.notify_all()
        return True

    def values(self) -> list[dict[str, Any]]:
        with self._cond:
            return [r.values for r in self.readings]

    def wait_for(self, pred: Callable[[list[Reading]], bool], timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pred(self.readings), timeout)

    def count(self) -> int:
        with self._cond:
            return len(self.readings)


class FakeWorld:
    """Only the part of SimWorld the serial readers use: `extras[name].path`."""

    def __init__(self, extras: dict[str, Any]) -> None:
        self.extras = extras
        self.sysfs: Any = None
        self.gpio_lines: dict[str, Any] = {}


def make_ctx(name: str, driver: str, sim_extras: dict[str, Any] | None = None
             ) -> tuple[ReaderContext, Collector]:
    col = Collector()
    ctx = ReaderContext(
        put=col.put, health=DeviceHealth(name, driver), simulate=sim_extras is not None,
        sim=FakeWorld(sim_extras or {}),
    )
    return ctx, col


def wait_until(pred: Callable[[], bool], timeout: float = 30.0, step: float = 0.02) -> bool:
    """Poll a condition that has no event to wait on (test helper only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
