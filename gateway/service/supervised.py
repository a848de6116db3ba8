"""What the service glue (reload, watchdog, status) sees of the running gateway.

The daemon (`gateway.daemon.Gateway`) sits above this layer and hands itself
in; these Protocols are all the service modules know of it, so they never
import the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.config.model import Config, DeviceBase
from gateway.health import Health
from gateway.readers.runner import DeviceRunner


class SimulatedDevices(Protocol):
    """The simulator world of a `simulate: true` gateway (`hardware_sim.world.SimWorld`)."""

    def add_device(self, dev: DeviceBase) -> None: ...

    def remove_device(self, dev: DeviceBase) -> None: ...


class Backlog(Protocol):
    def depth(self) -> int: ...

    @property
    def spool_state(self) -> str: ...  # ok, full, readonly, io_error, missing

    @property
    def spool_error(self) -> str | None: ...


class Wakeable(Protocol):
    def wake(self) -> None: ...


class Supervised(Protocol):
    cfg: Config
    health: Health
    readers: dict[str, DeviceRunner]
    tick_hooks: list[Callable[[Supervised], None]]
    stop_hooks: list[Callable[[Supervised], None]]

    @property
    def sim(self) -> SimulatedDevices | None: ...

    @property
    def outbox(self) -> Backlog: ...

    @property
    def publisher(self) -> Wakeable: ...

    def make_reader(self, dev: DeviceBase) -> DeviceRunner: ...

    def stop_readers(self, names: list[str] | None = None, timeout: float = 5.0) -> None: ...

    def alive_problems(self, max_age: float | None = None) -> list[str]: ...

    def wake(self) -> None:
        """Run the tick hooks now (a state changed that systemd's Status= should show)."""
        ...
