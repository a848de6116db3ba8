"""What the status page shows that the pipeline does not already keep.

Per-device health, spool counters and broker state already exist (`Health`,
`Outbox.stats`). The page also wants, per device, the last values with their
age; a small history of each numeric quantity to draw a sparkline; and a log
of recent state changes. `StatusRecorder` keeps exactly that, bounded:

- `tap(put)` wraps the outbox's `put`: every reading handed to the outbox is
  seen once, in the reader's own thread, for a few dict and array writes.
- A `Series` is a ring of fixed-width time buckets (average, minimum,
  maximum) in three `array('d')`: `3 × 8 × points` bytes per quantity
  (8.6 KiB for the default 360 points = 6 h of 1-minute buckets), whatever
  the reading rate. Older buckets are overwritten; nothing grows.
- The event log is a `deque(maxlen=EVENTS)` of state changes (device ok /
  failing / stopped, broker connected / lost), fed by `Health.on_change`.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.health import Health
from gateway.reading import Reading

#: State changes kept for the page.
EVENTS = 200


class Series:
    """A ring of `points` buckets of `step` seconds: average, minimum and maximum per bucket."""

    __slots__ = ("_avg", "_count", "_head", "_head_t", "_max", "_min", "points", "step")

    def __init__(self, points: int, step: float) -> None:
        self.points = points
        self.step = step
        nan = float("nan")
        self._avg = array("d", [nan]) * points
        self._min = array("d", [nan]) * points
        self._max = array("d", [nan]) * points
        self._count = 0  # readings in the head bucket
        self._head = -1  # ring index of the newest bucket
        self._head_t = 0  # bucket number (time // step) of the newest bucket

    def add(self, t: float, value: float) -> None:
        b = int(t // self.step)
        if self._head < 0 or b > self._head_t:
            # New bucket(s): clear the ones skipped (no readings then), then open `b`.
            skip = 1 if self._head < 0 else min(b - self._head_t, self.points)
            nan = float("nan")
            for _ in range(skip):
                self._head = (self._head + 1) % self.points
                self._avg[self._head] = self._min[self._head] = self._max[self._head] = nan
            self._head_t = b
            self._count = 0
        elif b < self._head_t:
            return  # a late reading for a closed bucket: the sparkline does not go back
        i = self._head
        n = self._count + 1
        if n == 1:
            self._avg[i] = self._min[i] = self._max[i] = value
        else:
            self._avg[i] += (value - self._avg[i]) / n
            if value < self._min[i]:
                self._min[i] = value
            if value > self._max[i]:
                self._max[i] = value
        self._count = n

    def snapshot(self) -> dict[str, Any]:
        """Oldest first: bucket start times and avg/min/max (null where no reading fell)."""
        if self._head < 0:
            return {"step_s": self.step, "t": [], "avg": [], "min": [], "max": []}
        ts: list[float] = []
        avg: list[float | None] = []
        lo: list[float | None] = []
        hi: list[float | None] = []
        for k in range(self.points - 1, -1, -1):
            i = (self._head - k) % self.points
            a = self._avg[i]
            if math.isnan(a):
                continue
            ts.append((self._head_t - k) * self.step)
            avg.append(a)
            lo.append(self._min[i])
            hi.append(self._max[i])
        return {"step_s": self.step, "t": ts, "avg": avg, "min": lo, "max": hi}


@dataclass
class LastReading:
    ts: float
    values: dict[str, Any]


class StatusRecorder:
    """Last values, sparkline series and recent events, for the status page."""

    def __init__(self, health: Health, window: float = 6 * 3600.0, points: int = 360,
                 clock: Callable[[], float] = time.time) -> None:
        self.health = health
        self.points = points
        self.step = window / points
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, LastReading] = {}
        self._series: dict[tuple[str, str], Series] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=EVENTS)
        self._states: dict[str, str] = {}
        self._broker: bool | None = None
        health.on_change(self._health_changed)

    # -- readings -----------------------------------------------------------------------
    def tap(self, put: Callable[[Reading], bool]) -> Callable[[Reading], bool]:
        """`put` that also records what passes (only what the outbox accepted)."""

        def recording_put(reading: Reading) -> bool:
            accepted = put(reading)
            if accepted:
                self.record(reading)
            return accepted

        return recording_put

    def record(self, reading: Reading) -> None:
        with self._lock:
            self._last[reading.device] = LastReading(reading.ts, reading.values)
            for key, value in reading.values.items():
                if type(value) not in (float, int) or (type(value) is float and not math.isfinite(value)):
                    continue  # bools, text, lists (inference labels): no sparkline
                s = self._series.get((reading.device, key))
                if s is None:
                    s = self._series[(reading.device, key)] = Series(self.points, self.step)
                s.add(reading.ts, float(value))

    def last(self, device: str) -> LastReading | None:
        with self._lock:
            return self._last.get(device)

    def series(self) -> dict[str, dict[str, dict[str, Any]]]:
        with self._lock:
            items = list(self._series.items())
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for (device, key), s in items:
                out.setdefault(device, {})[key] = s.snapshot()
        return out

    def forget(self, device: str) -> None:
        """A device removed by a reload: its values and history go with it."""
        with self._lock:
            self._last.pop(device, None)
            for k in [k for k in self._series if k[0] == device]:
                del self._series[k]

    # -- events ---------------------------------------------------------------------------
    def note(self, what: str, device: str | None = None, level: str = "info") -> None:
        with self._lock:
            self._events.append({"ts": self.clock(), "device": device, "level": level, "what": what})

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def _health_changed(self) -> None:
        # Runs in the thread that changed a state: one pass over the devices, no I/O.
        h = self.health
        with h._lock:
            states = {n: (d.state, d.last_error) for n, d in h.devices.items()}
        connected, error = h.broker_connected, h.broker_error
        notes: list[tuple[str, str | None, str]] = []
        with self._lock:
            for name, (state, last_error) in states.items():
                before = self._states.get(name)
                if before == state:
                    continue
                self._states[name] = state
                if state == "failing":
                    notes.append((f"failing: {last_error}", name, "error"))
                elif state == "ok" and before == "failing":
                    notes.append(("recovered", name, "info"))
                elif state in ("ok", "stopped"):
                    notes.append((state, name, "info"))
            if connected != self._broker:
                if connected:
                    notes.append(("broker connected", None, "info"))
                elif self._broker is not None:
                    notes.append((f"broker lost: {error or 'disconnected'}", None, "error"))
                self._broker = connected
        for what, device, level in notes:
            self.note(what, device, level)
