"""Report on change: publish a reading only when a value moved by more than its deadband.

A slow-changing greenhouse should not send 86,400 identical readings a day.
Per device (`publish: {on_change: true, deadband: 0.2, max_silence: 5m}`), with
optional per-quantity deadbands (`deadbands: {humidity_pct: 2, pressure_hpa: "0.1%"}`):

- The first reading is always published.
- A reading is published when any numeric quantity differs from the value
  *last published* by more than the deadband (absolute, or "N%" of the last
  published value), or a non-numeric value differs at all, or a key appears
  or disappears.  Comparing against the last *published* value (not the last
  seen) means a slow drift is still reported once it adds up to the deadband.
- `max_silence`: a reading is published anyway when the last one is at least
  this old, so consumers can tell "unchanged" from "dead".
- When a reading is published, all its values go out (payloads stay complete).

`seq` is assigned in the outbox, so it counts only published readings.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from gateway.config.model import PublishPolicy


def parse_deadband(value: float | str | None) -> tuple[float, bool]:
    """(amount, relative): 0.2 -> (0.2, False); "1%" -> (0.01, True); None -> (0.0, False)."""
    if value is None:
        return 0.0, False
    if isinstance(value, str):
        return float(value.strip()[:-1]) / 100.0, True
    return float(value), False


class ChangeFilter:
    """`filter(values, ts) -> values | None` (None: skip this reading). Thread-safe."""

    def __init__(self, policy: PublishPolicy) -> None:
        self.policy = policy
        self.amount, self.relative = parse_deadband(policy.deadband)
        self.per_key = {k: parse_deadband(v) for k, v in policy.deadbands.items()}
        self.max_silence = policy.max_silence
        self._last: dict[str, Any] | None = None
        self._last_ts = 0.0
        self._lock = threading.Lock()
        self.published = 0
        self.suppressed = 0

    def __call__(self, values: dict[str, Any], ts: float) -> dict[str, Any] | None:
        with self._lock:
            if self._should_publish(values, ts):
                self._last = dict(values)
                self._last_ts = ts
                self.published += 1
                return values
            self.suppressed += 1
            return None

    def _should_publish(self, values: dict[str, Any], ts: float) -> bool:
        last = self._last
        if last is None or not self.policy.on_change:
            return True
        if self.max_silence is not None and ts - self._last_ts >= self.max_silence:
            return True
        if values.keys() != last.keys():
            return True
        return any(self.changed(last[k], v, k) for k, v in values.items())

    def changed(self, old: Any, new: Any, key: str = "") -> bool:
        """Whether `new` differs from the last published `old` by more than the deadband."""
        if not (_is_number(old) and _is_number(new)):
            return bool(old != new)
        a, b = float(old), float(new)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) != math.isnan(b)
        amount, relative = self.per_key.get(key, (self.amount, self.relative))
        limit = amount * abs(a) if relative else amount
        return abs(b - a) > limit


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
