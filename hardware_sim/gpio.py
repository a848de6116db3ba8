"""Simulated GPIO input lines: a contact that opens and closes, a pulse source, both bouncing.

Stands in for a libgpiod line request (`gateway.readers.kernel.EdgeSource`): edge
events with CLOCK_MONOTONIC timestamps, readable when its file descriptor is (a
pipe the generator writes one byte to per batch), and the line's logical level.

A generator thread (`sim-gpio-<device>`) makes each press as a real reed switch or
push button does: the make edge, then `bounce` extra break/make pairs 0.2 ms apart;
the break half a period later, bouncing likewise. It counts the presses it made
(`presses`), so a test can compare the gateway's count with the truth exactly.

Settings (`sim:` of the device): `rate_hz` (pulses per second, or for a contact the
changes per second), `bounce` (extra edge pairs per transition), `presses` (stop
after this many; absent: go on).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any

from gateway.drivers.gpio_input import Edge

BOUNCE_GAP_NS = 200_000  # 0.2 ms between bounce edges


class SimLine:
    def __init__(self, name: str, rate_hz: float = 1.0, bounce: int = 3,
                 presses: int | None = None, contact: bool = False) -> None:
        self.name = name
        self.rate_hz = rate_hz
        self.bounce = bounce
        self.limit = presses
        self.contact = contact
        self.presses = 0
        self._level = False
        self._events: deque[Edge] = deque()
        self._lock = threading.Lock()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"sim-gpio-{name}", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, cfg: Any, contact: bool) -> SimLine:
        sim = dict(cfg.sim or {})
        return cls(cfg.name, rate_hz=float(sim.get("rate_hz", 0.2 if contact else 1.0)),
                   bounce=int(sim.get("bounce", 3)), presses=sim.get("presses"), contact=contact)

    # -- what the reader sees -------------------------------------------------------------------
    @property
    def fd(self) -> int:
        return self._r

    def read_edges(self) -> list[Edge]:
        try:
            os.read(self._r, 4096)
        except BlockingIOError:
            pass
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    def level(self) -> bool:
        with self._lock:
            return self._level

    def close(self) -> None:
        """The reader releases the line; the simulated switch keeps its state for the next open."""

    # -- the generator ----------------------------------------------------------------------
    def _transition(self, to: bool, t: int) -> None:
        edges = [Edge(to, t)]
        for i in range(self.bounce):
            edges.append(Edge(not to, t + (2 * i + 1) * BOUNCE_GAP_NS))
            edges.append(Edge(to, t + (2 * i + 2) * BOUNCE_GAP_NS))
        with self._lock:
            self._events.extend(edges)
            self._level = to
        try:
            os.write(self._w, b"e")
        except BlockingIOError:
            pass  # the reader is behind; the byte already there wakes it

    def _run(self) -> None:
        # Edges carry their scheduled times, not the moment this thread got to run: on a
        # loaded machine the thread is late, but the signal it models is not.
        period_ns = round(1e9 / self.rate_hz)
        next_ns = time.monotonic_ns() + period_ns
        while self.limit is None or self.presses < self.limit:
            if self._stop.wait(max(0.0, (next_ns - time.monotonic_ns()) / 1e9)):
                return
            if self.contact:
                self._transition(not self._level, next_ns)
                self.presses += 1
            else:
                self._transition(True, next_ns)
                self.presses += 1
                release = next_ns + period_ns // 2
                if self._stop.wait(max(0.0, (release - time.monotonic_ns()) / 1e9)):
                    return
                self._transition(False, release)
            next_ns += period_ns

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if not self._closed:
            self._closed = True
            os.close(self._r)
            os.close(self._w)
