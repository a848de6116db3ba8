"""The simulated world for `gateway.simulate: true`: every configured device, faked.

I2C devices become chip models on simulated buses. Other kinds (serial ports,
the camera) register themselves through `SimWorld.extras`.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
from collections.abc import Callable
from typing import Any

from gateway.catalog import spec_for, specs
from gateway.config.model import Config, DeviceBase, I2CDevice
from hardware_sim.i2c import SimBus, SimChip, SimClock, make_chip

log = logging.getLogger("hardware_sim")


def has_model(driver: str) -> bool:
    """The simulator has a register-level model of this chip (`hardware_sim/chips/<driver>.py`)."""
    return importlib.util.find_spec(f"hardware_sim.chips.{driver}") is not None


def demo_layout() -> dict[str, int]:
    """One of every catalogued I2C chip the simulator models, at distinct addresses.

    Derived from the catalog (a new chip appears by itself): each chip at its
    config's default address if still free, else at the first free address its
    probe lists. `edge-gateway scan --simulate` scans this bus.
    """
    layout: dict[str, int] = {}
    for name, spec in sorted(specs().items()):
        if spec.kind != "i2c" or spec.probe is None or not has_model(name):
            continue
        default = spec.config.model_fields["address"].default
        for address in (default, *spec.probe.addresses):
            if isinstance(address, int) and address not in layout.values():
                layout[name] = address
                break
    return layout


class SimWorld:
    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or SimClock()
        self.buses: dict[int, SimBus] = {}
        self.chips: dict[str, SimChip] = {}
        #: Per-device simulator handles of other kinds (e.g. a pty-served serial device).
        self.extras: dict[str, Any] = {}
        #: Simulated GPIO output lines (relays) by output name.
        self.outputs: dict[str, Any] = {}
        #: Kernel-driven devices: a fake /sys tree (created on first use) and GPIO lines.
        self.sysfs: Any = None
        self.gpio_lines: dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg: Config) -> SimWorld:
        world = cls()
        for dev in cfg.devices:
            if spec_for(dev.driver).kind == "i2c" and isinstance(dev, I2CDevice):
                world.add_chip(dev.name, dev.driver, dev.bus, dev.address, dev.sim)
        world.add_serial([d for d in cfg.devices if spec_for(d.driver).kind == "serial"])
        world.add_outputs(getattr(cfg, "outputs", ()))
        for dev in cfg.devices:
            if spec_for(dev.driver).kind == "kernel":
                world.add_kernel(dev)
        return world

    def add_device(self, dev: DeviceBase) -> None:
        """A device added or changed by a reload: its chip model or a fresh pty."""
        kind = spec_for(dev.driver).kind
        if kind == "i2c" and isinstance(dev, I2CDevice):
            self.add_chip(dev.name, dev.driver, dev.bus, dev.address, dev.sim)
        elif kind == "serial":
            self.add_serial([dev])  # the reader opens extras[name].path
        elif kind == "kernel":
            self.add_kernel(dev)

    def remove_device(self, dev: DeviceBase) -> None:
        """A device removed or changed by a reload: detach its chip, close its pty."""
        chip = self.chips.pop(dev.name, None)
        if chip is not None and isinstance(dev, I2CDevice):
            bus = self.buses.get(dev.bus)
            if bus is not None and bus.chips.get(chip.address) is chip:
                bus.detach(chip.address)
        line = self.gpio_lines.pop(dev.name, None)
        if line is not None:
            line.shutdown()
        extra = self.extras.pop(dev.name, None)
        if any(other is extra for other in self.extras.values()):
            return  # a line shared with other devices (Modbus units on one port) stays up
        close = getattr(extra, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing the simulated %s failed", dev.name)

    def add_outputs(self, outputs: Any) -> None:
        """Simulated relays for `kind: gpio` outputs (Modbus and serial ones use their device)."""
        from hardware_sim.gpio_output import SimOutputLine

        for out in outputs:
            if out.kind == "gpio" and out.name not in self.outputs:
                self.outputs[out.name] = SimOutputLine.from_config(out)
    @property
    def sysfs_root(self) -> str | None:
        return None if self.sysfs is None else str(self.sysfs.root)

    def add_kernel(self, dev: Any) -> None:
        """A kernel-driven device: files in the fake /sys, or a simulated GPIO line."""
        if dev.driver in ("gpio_contact", "pulse_counter"):
            from hardware_sim.gpio import SimLine

            old = self.gpio_lines.pop(dev.name, None)
            if old is not None:
                old.shutdown()
            self.gpio_lines[dev.name] = SimLine.from_config(dev, contact=dev.driver == "gpio_contact")
            return
        if self.sysfs is None:
            from hardware_sim.sysfs import SimSysfs

            self.sysfs = SimSysfs()
            self.sysfs.add(dev.driver, dev)
            self.sysfs.start()
        else:
            self.sysfs.add(dev.driver, dev)

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
        for line in self.gpio_lines.values():
            line.shutdown()
        if self.sysfs is not None:
            self.sysfs.close()
        for extra in self.extras.values():
            close = getattr(extra, "close", None)
            if close is not None:
                close()
