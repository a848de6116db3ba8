"""`edge-gateway scan [--bus N] [-c CONFIG] [--simulate]`: what answers on an I2C bus.

Presence is probed the way `i2cdetect` does by default: a read byte for
0x30-0x37 and 0x50-0x5F (where a quick write could corrupt an EEPROM or
confuse a write-protect), an SMBus quick write elsewhere. A responding address
is then named from the catalog: by its id register when a candidate chip has
one (BME280 0xD0 = 0x60, BMP280 0xD0 = 0x58), otherwise by its address alone.

Buses: a real `/dev/i2c-N` (smbus2); with `-c CONFIG` of a `simulate: true`
config, that config's simulated buses; with `--simulate`, a simulated bus
holding one of every chip the simulator models.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.catalog.registry import specs
from gateway.cli import EXIT_CONFIG
from gateway.commands import load_or_report
from gateway.device_hints import hint

FIRST, LAST = 0x03, 0x77
READ_PROBE = (range(0x30, 0x38), range(0x50, 0x60))

#: One of every simulated chip, at addresses that do not collide (`--simulate`).
def sim_layout() -> dict[str, int]:
    """The simulated bus of `scan --simulate`: one of every chip (derived from the catalog)."""
    from hardware_sim.world import demo_layout  # the simulator: only when asked for

    return demo_layout()


@dataclass
class Found:
    address: int
    #: Drivers this address is consistent with, best first.
    chips: list[str] = field(default_factory=list)
    #: How the chip was named: "id 0x60 at 0xd0", "address", or "" when unknown.
    by: str = ""
    #: Configured devices at this address (with -c).
    configured: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.chips:
            what = "unknown chip"
        elif self.by == "address":
            what = " or ".join(self.chips) + " (by address)"
        else:
            what = f"{self.chips[0]} ({self.by})"
        if self.configured:
            what += "  <- configured: " + ", ".join(self.configured)
        return f"0x{self.address:02x}  {what}"


def responds(bus: Any, address: int) -> bool:
    """Does anything ACK `address`? (i2cdetect's default probe per range)."""
    try:
        if any(address in r for r in READ_PROBE):
            bus.read_byte(address)
        else:
            bus.write_quick(address)
    except OSError:
        return False
    return True


def identify(bus: Any, address: int) -> tuple[list[str], str]:
    """Candidate drivers for a responding address, and how they were chosen."""
    by_address: list[str] = []
    for name, spec in sorted(specs().items()):
        probe = spec.probe
        if spec.kind != "i2c" or probe is None or address not in probe.addresses:
            continue
        if probe.id_register is None:
            by_address.append(name)
            continue
        try:
            if probe.id_format == "word_be":
                msb, lsb = bus.read_i2c_block_data(address, probe.id_register, 2)
                value = (msb << 8) | lsb
            else:
                value = bus.read_byte_data(address, probe.id_register)
        except OSError:
            continue
        if value in probe.id_values:
            return [name], f"id 0x{value:02x} at register 0x{probe.id_register:02x}"
    return by_address, ("address" if by_address else "")


def scan_bus(bus: Any, configured: dict[int, list[tuple[str, str]]] | None = None) -> list[Found]:
    """Every responding address on `bus`; `configured`: address -> [(device name, driver)]."""
    found: list[Found] = []
    for address in range(FIRST, LAST + 1):
        if not responds(bus, address):
            continue
        chips, by = identify(bus, address)
        devices = (configured or {}).get(address, [])
        if by == "address":  # the configured driver is the likeliest of the candidates
            wanted = [d for _, d in devices]
            chips.sort(key=lambda c: (c not in wanted, c))
        found.append(Found(address, chips, by, [f"{n} ({d})" for n, d in devices]))
    return found


def simulated_bus(bus_number: int = 1) -> Any:
    from hardware_sim.i2c import SimBus, SimClock, make_chip

    clock = SimClock()
    bus = SimBus(bus_number)
    for driver, address in sim_layout().items():
        bus.attach(make_chip(driver, address, None, clock, seed=driver))
    return bus


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scan", help="list the addresses answering on an I2C bus and what chips they are")
    p.add_argument("--bus", type=int, default=None, metavar="N",
                   help="bus number (/dev/i2c-N); default: 1, or every bus of the config")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="mark configured devices; with simulate: true, scan its simulated buses "
                        "(default: /etc/edge-gateway/config.yaml when it exists and is readable)")
    p.add_argument("--simulate", action="store_true",
                   help="scan a simulated bus holding one of every supported chip")
    p.add_argument("--w1", action="store_true",
                   help="list the 1-Wire temperature probes the kernel found (w1_therm) instead")
    p.set_defaults(func="gateway.commands.scan:main")


def scan_w1(root: Path) -> int:
    """The probes under /sys/bus/w1/devices, each read once, and a config entry to paste."""
    from gateway.drivers import DriverError
    from gateway.drivers.w1_therm import FAMILIES, W1Bus, family_of

    bus = W1Bus(root)
    try:
        ids = bus.probe_ids()
    except FileNotFoundError as exc:
        print(f"1-Wire: {exc.strerror} ({exc.filename})", file=sys.stderr)
        return 1
    print(f"1-Wire (w1_therm): {len(ids)} probe{'s' if len(ids) != 1 else ''}")
    if ids:
        bus.bulk_convert()
    for pid in ids:
        try:
            value = f"{bus.read(pid):.3f} °C"
        except (DriverError, OSError) as exc:
            value = f"unreadable: {exc}"
        print(f"  {pid}  {FAMILIES[family_of(pid) or 0]}  {value}")
    if ids:
        print("\nconfig:\n  - name: probes\n    driver: ds18b20\n    sensors:")
        for i, pid in enumerate(ids):
            print(f"      probe{i + 1}: {pid}")
    return 0 if ids else 1


def main(args: argparse.Namespace) -> int:
    if args.w1:
        if args.simulate:
            from types import SimpleNamespace

            from hardware_sim.sysfs import SimSysfs

            fake = SimSysfs()
            fake.add("ds18b20", SimpleNamespace(name="probes", sensor=None, sensors="all", sim=None))
            fake.start()
            try:
                return scan_w1(fake.root)
            finally:
                fake.close()
        return scan_w1(Path("/"))
    configured: dict[int, dict[int, list[tuple[str, str]]]] = {}
    buses: dict[int, Any] = {}
    if args.config is None and not args.simulate:
        import os

        from gateway.cli import DEFAULT_CONFIG

        if os.access(DEFAULT_CONFIG, os.R_OK):  # the installed config marks what is configured
            args.config = DEFAULT_CONFIG
    if args.config:
        from gateway.config.model import I2CDevice  # pydantic: not at the top (see gateway.commands)

        cfg = load_or_report(args.config)
        if cfg is None:
            return EXIT_CONFIG
        for dev in cfg.devices:
            if isinstance(dev, I2CDevice):
                configured.setdefault(dev.bus, {}).setdefault(dev.address, []).append(
                    (dev.name, dev.driver)
                )
        if cfg.gateway.simulate and not args.simulate:
            # Only the I2C chips of the config (serial devices need no simulating here).
            from hardware_sim.world import SimWorld

            world = SimWorld()
            for dev in cfg.devices:
                if isinstance(dev, I2CDevice):
                    world.add_chip(dev.name, dev.driver, dev.bus, dev.address, dev.sim)
            buses = dict(world.buses)
    if args.simulate:
        number = 1 if args.bus is None else args.bus
        buses = {number: simulated_bus(number)}
    numbers = [args.bus] if args.bus is not None else (sorted(buses or configured) or [1])
    status = 0
    for number in numbers:
        bus = buses.get(number)
        opened = False
        if bus is None:
            if buses:  # a simulated world without this bus
                print(f"bus {number}: not simulated by this config", file=sys.stderr)
                status = 1
                continue
            try:
                from smbus2 import SMBus

                bus = SMBus(number)
                opened = True
            except OSError as exc:
                advice = hint(f"/dev/i2c-{number}", exc.errno)
                print(f"bus {number}: cannot open /dev/i2c-{number}: {exc.strerror or exc}"
                      + (f": {advice}" if advice else ""), file=sys.stderr)
                status = 1
                continue
        try:
            found = scan_bus(bus, configured.get(number))
        finally:
            if opened:
                bus.close()
        kind = "simulated" if number in buses else f"/dev/i2c-{number}"
        print(report(number, kind, found, configured.get(number, {})), end="")
    return status


def report(number: int, kind: str, found: list[Found],
           configured: dict[int, list[tuple[str, str]]]) -> str:
    """What scan prints for one bus: the listing, then a snippet for what is not configured."""
    lines = [f"bus {number} ({kind}): {len(found)} device{'s' if len(found) != 1 else ''}"]
    lines += ["  " + f.describe() for f in found]
    for address in sorted(set(configured) - {f.address for f in found}):
        names = ", ".join(f"{n} ({d})" for n, d in configured[address])
        lines.append(f"  0x{address:02x}  no answer  <- configured: {names}")
    return "\n".join(lines) + "\n" + config_snippet(number, found)


def config_snippet(bus: int, found: list[Found]) -> str:
    """`devices:` entries for the chips found and not configured, ready to paste."""
    entries = []
    for f in found:
        if not f.chips or f.configured:
            continue
        driver, *others = f.chips
        line = (f"  - {{name: {driver}_{f.address:02x}, driver: {driver}, bus: {bus}, "
                f"address: 0x{f.address:02x}, interval: 5s}}")
        if others:
            line += f"   # by address alone; or: {', '.join(others)}"
        entries.append(line)
    if not entries:
        return ""
    return ("\n# Ready to paste into the config (rename the devices; keys: docs/config-reference.md):\n"
            "devices:\n" + "\n".join(entries) + "\n")
