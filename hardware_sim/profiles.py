"""Value profiles: how a simulated physical quantity moves over time.

A profile is a function of seconds since the simulation started. Config form
(under a device's `sim.values`)::

    temperature_c: 21.5                                  # constant
    humidity_pct: {sine: {mean: 45, amplitude: 10, period: 1d}}
    pressure_hpa: {random_walk: {start: 1010, step: 0.05, min: 980, max: 1040}}
    illuminance_lx: {step: {values: [0, 500, 20000], every: 10s}}
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from typing import Any, cast

from gateway.config.types import parse_duration
from gateway.slots import SlotsRecord

Profile = Callable[[float], float]


# The profiles are SlotsRecords: simulate mode loads them into the daemon
# (gateway.slots). Each `__slots__` is in field order, not sorted: the order of the
# repr and the comparison.
class Constant(SlotsRecord):
    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, t: float) -> float:
        return self.value


class Sine(SlotsRecord):
    __slots__ = ("mean", "amplitude", "period", "phase")

    def __init__(self, mean: float, amplitude: float, period: float = 86400.0,
                 phase: float = 0.0) -> None:
        self.mean = mean
        self.amplitude = amplitude
        self.period = period
        self.phase = phase

    def __call__(self, t: float) -> float:
        return self.mean + self.amplitude * math.sin(2 * math.pi * (t + self.phase) / self.period)


class RandomWalk(SlotsRecord):
    """A bounded random walk, advanced once per `dt` seconds of simulated time."""

    # The parameters, then the state (not parameters, but in the repr and comparison).
    __slots__ = ("start", "step", "min", "max", "dt", "seed",
                 "_value", "_t", "_rng", "_lock")

    def __init__(self, start: float, step: float, min: float = -math.inf,
                 max: float = math.inf, dt: float = 1.0, seed: int = 0) -> None:
        self.start = start
        self.step = step
        self.min = min
        self.max = max
        self.dt = dt
        self.seed = seed
        self._value = start
        self._t = 0.0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, t: float) -> float:
        with self._lock:
            while self._t + self.dt <= t:
                self._t += self.dt
                self._value += self._rng.uniform(-self.step, self.step)
                self._value = min(self.max, max(self.min, self._value))
            return self._value


class Step(SlotsRecord):
    __slots__ = ("values", "every")

    def __init__(self, values: list[float], every: float) -> None:
        self.values = values
        self.every = every

    def __call__(self, t: float) -> float:
        return self.values[int(max(t, 0.0) // self.every) % len(self.values)]


def make_profile(spec: Any, default: float | None = None) -> Profile:
    """Build a profile from its config form (see module doc)."""
    if spec is None:
        if default is None:
            raise ValueError("no value given")
        return Constant(default)
    if callable(spec):
        return cast(Profile, spec)  # already a profile
    if isinstance(spec, bool):
        raise ValueError(f"not a value profile: {spec!r}")
    if isinstance(spec, int | float):
        return Constant(float(spec))
    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, args),) = spec.items()
        if not isinstance(args, dict):
            raise ValueError(f"{kind}: expected a mapping of parameters")
        a = dict(args)
        for key in ("period", "every", "dt", "phase"):
            if key in a:
                a[key] = parse_duration(a[key])
        try:
            if kind == "constant":
                return Constant(float(a["value"]))
            if kind == "sine":
                return Sine(**a)
            if kind == "random_walk":
                return RandomWalk(**a)
            if kind == "step":
                return Step(values=[float(v) for v in a["values"]], every=float(a["every"]))
        except (TypeError, KeyError) as exc:
            raise ValueError(f"{kind}: bad parameters ({exc})") from None
        raise ValueError(f"unknown profile {kind!r} (constant, sine, random_walk, step)")
    raise ValueError(f"not a value profile: {spec!r}")
