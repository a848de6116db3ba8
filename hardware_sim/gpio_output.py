"""A simulated GPIO output line with a relay on it: it keeps what was written.

Stands in for a libgpiod output request (`gateway.drivers.gpio_output.OutputLine`).
A test reads `on` (the logical state), `level` (the electrical level, inverted when
active low) and `history` (every change, with its time.monotonic()).
"""

from __future__ import annotations

import threading
import time
from typing import Any


class SimOutputLine:
    def __init__(self, name: str, active_low: bool = False) -> None:
        self.name = name
        self.active_low = active_low
        self._lock = threading.Lock()
        self._on = False
        self.requested = False
        #: (time.monotonic(), logical state) for every write that changed it.
        self.history: list[tuple[float, bool]] = []
        #: Writes fail with EIO while set (a fault a test can inject).
        self.fail = False

    @classmethod
    def from_config(cls, cfg: Any) -> SimOutputLine:
        return cls(cfg.name, bool(cfg.active_low))

    # -- what the gateway sees (one request at a time, like the kernel's) ------------------
    def request(self, initial: bool) -> SimOutputLine:
        with self._lock:
            if self.requested:
                raise OSError(16, "Device or resource busy", self.name)
            self.requested = True
        self.set(initial)
        return self

    def set(self, on: bool) -> None:
        if self.fail:
            raise OSError(5, "Input/output error", self.name)
        with self._lock:
            if on != self._on or not self.history:
                self.history.append((time.monotonic(), on))
            self._on = on

    def get(self) -> bool:
        with self._lock:
            return self._on

    def close(self) -> None:
        with self._lock:
            self.requested = False

    # -- what a test sees -------------------------------------------------------------
    @property
    def on(self) -> bool:
        return self.get()

    @property
    def level(self) -> bool:
        """The electrical level of the line (high = True)."""
        return self.get() != self.active_low
