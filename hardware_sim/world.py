"""The simulated world for `gateway.simulate: true`: every configured device, faked.

I2C devices become chip models on simulated buses. Other kinds (serial ports,
the camera) register themselves through `SimWorld.extras`.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import Any

from hardware_sim.i2c import SimBus, SimChip, SimClock, make_chip

log = logging.getLogger("hardware_sim")


class SimWorld:
    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or SimClock()
        self.buses: dict[int, SimBus] = {}
        self.chips: dict[str, SimChip] = {}
        #: Per-device simulator handles of other kinds (e.g. a pty-served serial device).
        self.extras: dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg: Any) -> SimWorld:
        from gateway.catalog import spec_for

        world = cls()
        for dev in cfg.devices:
            spec = spec_for(dev.driver)
            if spec.kind == "i2c":
                world.add_chip(dev.name, dev.driver, dev.bus, dev.address, dev.sim)
        world.add_serial([d for d in cfg.devices if spec_for(d.driver).kind == "serial"])
        return world

    def add_serial(self, devices: list[Any]) -> None:
        """Serve serial devices on real ptys; readers open `extras[name].path`."""
        if devices:
            from hardware_sim.serial import serve_devices

            self.extras.update(serve_devices(devices, existing=self.extras))

    def add_chip(self, name: str, driver: str, bus: int, address: int,
                 sim: dict[str, Any] | None) -> SimChip:
        chip = make_chip(driver, address, sim, self.clock, seed=name)
        self.buses.setdefault(bus, SimBus(bus)).attach(chip)
        self.chips[name] = chip
        return chip

    def open_bus(self, bus: int) -> SimBus:
        """Stands in for `smbus2.SMBus(bus)`."""
        b = self.buses.get(bus)
        if b is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), f"/dev/i2c-{bus}")
        return b

    def close(self) -> None:
        for extra in self.extras.values():
            close = getattr(extra, "close", None)
            if close is not None:
                close()
