"""GPIO inputs: what a contact and a pulse counter make of a line's edges (pure logic).

The line itself is the kernel's (libgpiod v2 character device, or the simulator's);
this module only turns timestamped edges into debounced states and counts, so it can
be tested edge by edge.

- A mechanical contact bounces: one press gives a burst of edges within a few ms.
  `PulseCounter` counts an edge of the chosen polarity only when `debounce` has passed
  since the last counted one (a reed switch in a rain gauge, a cup anemometer, a flow
  meter's hall sensor).
- `ContactDebouncer` reports a contact's new state once its line has been quiet for
  `debounce`: the state is then sampled, not inferred from edge parity (an edge lost
  to a full kernel buffer cannot leave it inverted).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from gateway.config.model import DeviceBase
from gateway.config.schema import Field


# A NamedTuple: a sensors-only daemon loads drivers (why that matters: gateway.slots).
class Edge(NamedTuple):
    rising: bool
    #: Kernel timestamp of the edge (CLOCK_MONOTONIC), nanoseconds.
    t_ns: int


class PulseCounter:
    """Debounced count of rising (or falling) edges, with a running total.

    An edge of the counted polarity is a pulse only if the line had been still (no
    edge of either polarity) for `debounce` before it. A bouncing contact's extra
    edges come within a fraction of a millisecond of each other, on make and on
    break, so they never count; the next real pulse comes after the line rested.
    `debounce` must be shorter than the quiet time between pulses (half a period
    at 50 % duty: 5 ms at 100 Hz) and longer than the contact's bounce (~1 ms).
    """

    def __init__(self, debounce_s: float, rising: bool = True, total: int = 0) -> None:
        self.debounce_ns = int(debounce_s * 1e9)
        self.rising = rising
        self.total = total
        self._pending = 0
        self._last_ns: int | None = None
        #: Edges ignored as bounce (for health counters).
        self.bounces = 0

    def feed(self, edges: list[Edge]) -> None:
        for e in edges:
            still = self._last_ns is None or e.t_ns - self._last_ns >= self.debounce_ns
            self._last_ns = e.t_ns
            if e.rising != self.rising:
                continue
            if not still:
                self.bounces += 1
                continue
            self._pending += 1
            self.total += 1

    def take(self) -> int:
        """Pulses counted since the last take."""
        n, self._pending = self._pending, 0
        return n


class ContactDebouncer:
    """When to sample a bouncing contact, and whether its state changed."""

    def __init__(self, debounce_s: float) -> None:
        self.debounce_ns = int(debounce_s * 1e9)
        self.state: bool | None = None
        self._quiet_from: int | None = None
        self.bounces = 0

    def feed(self, edges: list[Edge]) -> None:
        if edges:
            if self._quiet_from is not None:
                self.bounces += len(edges)
            else:
                self.bounces += len(edges) - 1
            self._quiet_from = edges[-1].t_ns + self.debounce_ns

    def settle_at(self) -> int | None:
        """Monotonic ns at which the line will have been quiet long enough (None: nothing pending)."""
        return self._quiet_from

    def settle(self, level: bool, now_ns: int) -> bool:
        """Sample `level` if the line has been quiet; True if the state changed."""
        if self._quiet_from is not None and now_ns < self._quiet_from:
            return False
        self._quiet_from = None
        changed = level != self.state
        self.state = level
        return changed


class GpiodInput:
    """One input line through libgpiod v2 (`gpiod` package, the `gpio` extra), with edge events.

    `chip` is a name (`gpiochip0`) or a path; `line` an offset or the line's name
    (`GPIO17` on a Pi). Edge timestamps are CLOCK_MONOTONIC, like `time.monotonic_ns()`.
    """

    def __init__(self, chip: str, line: int | str, bias: str = "as_is", active_low: bool = False,
                 consumer: str = "edge-gateway") -> None:
        from datetime import timedelta

        import gpiod
        from gpiod.line import Bias, Clock, Direction
        from gpiod.line import Edge as GEdge

        path = chip if chip.startswith("/") else f"/dev/{chip}"
        settings = gpiod.LineSettings(
            direction=Direction.INPUT, edge_detection=GEdge.BOTH,
            bias={"as_is": Bias.AS_IS, "disabled": Bias.DISABLED, "pull_up": Bias.PULL_UP,
                  "pull_down": Bias.PULL_DOWN}[bias],
            active_low=active_low, debounce_period=timedelta(0), event_clock=Clock.MONOTONIC,
        )
        self._rising = gpiod.EdgeEvent.Type.RISING_EDGE
        self._request = gpiod.request_lines(path, config={line: settings}, consumer=consumer)
        self._line = line

    @property
    def fd(self) -> int:
        return int(self._request.fd)

    def read_edges(self) -> list[Edge]:
        return [Edge(e.event_type == self._rising, int(e.timestamp_ns))
                for e in self._request.read_edge_events()]

    def level(self) -> bool:
        from gpiod.line import Value

        return bool(self._request.get_value(self._line) == Value.ACTIVE)

    def close(self) -> None:
        self._request.release()


# -- the config shared by the GPIO input entries (gpio_contact, pulse_counter) ------

Bias = Literal["as_is", "disabled", "pull_up", "pull_down"]


class GpioLineConfig(DeviceBase):
    """An input line of a GPIO chip, through libgpiod v2 (the `gpio` extra)."""

    chip: str = Field(default="gpiochip0", min_length=1,
                      description="GPIO chip: gpiochip0 (the header on every Pi, Pi 5 included) or a path.")
    line: int | str = Field(description="Line offset (the BCM GPIO number on a Pi) or line name (GPIO17).")
    bias: Bias = Field(default="pull_up", description="as_is | disabled | pull_up | pull_down.")
    active_low: bool = Field(
        default=True,
        description="true: a contact that closes to ground (with pull_up) reads as active/closed.",
    )
