"""`edge-gateway test [-c FILE]`: read every configured device once, print the values.

Like `telegraf --test`: the same readers the daemon runs (same drivers, bus
threads, simulator in simulate mode), but each reading is printed instead of
spooled, and nothing talks to a broker. Each device is read until its first
reading arrives or it has failed once; then everything stops.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from gateway.catalog.registry import spec_for
from gateway.cli import EXIT_CONFIG
from gateway.commands import load_or_report
from gateway.commands.watch import format_value
from gateway.config.model import I2CDevice
from gateway.health import Health
from gateway.readers.base import ReaderContext
from gateway.readers.factory import make_reader
from gateway.readers.i2c import I2CBuses, I2CReader
from gateway.readers.runner import DeviceRunner
from gateway.reading import Reading

if TYPE_CHECKING:
    from hardware_sim.world import SimWorld


class FirstReadings:
    """The first reading of each device; wakes the waiter when every device is settled."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.readings: dict[str, Reading] = {}
        self.cond = threading.Condition()

    def put(self, r: Reading) -> bool:
        with self.cond:
            self.readings.setdefault(r.device, r)
            self.cond.notify_all()
        return True

    def changed(self) -> None:
        with self.cond:
            self.cond.notify_all()


def format_values(values: dict[str, Any]) -> str:
    return "  ".join(f"{k}={format_value(v)}" for k, v in values.items())


def main(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    from gateway.commands.check import deep_checks

    problems = deep_checks(cfg)  # a missing extra (pymodbus...) is a config problem, not a crash
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    if args.log_level == "info":  # the table says what the readers would log
        logging.getLogger("gateway").setLevel(logging.ERROR)

    names = [d.name for d in cfg.devices]
    if not names:
        print(f"{args.config}: no devices configured")
        return 1
    sink = FirstReadings(names)
    health = Health()
    sim: SimWorld | None = None
    if cfg.gateway.simulate:
        from hardware_sim.world import SimWorld

        sim = SimWorld.from_config(cfg)
        buses = I2CBuses(sim.open_bus)
    else:
        buses = I2CBuses()
    readers: list[DeviceRunner] = []
    states = {d.name: health.device(d.name, d.driver) for d in cfg.devices}

    def settled() -> bool:
        return all(n in sink.readings or states[n].state == "failing" for n in names)

    polled: list[I2CReader] = []
    try:
        for dev in cfg.devices:
            spec = spec_for(dev.driver)
            ctx = ReaderContext(put=sink.put, health=states[dev.name],
                                on_health_change=sink.changed, simulate=cfg.gateway.simulate,
                                sim=sim)
            if spec.kind == "i2c":
                assert isinstance(dev, I2CDevice)
                polled.append(I2CReader(dev, spec, ctx, buses))
            else:  # serial devices stream: their reader threads run meanwhile
                reader = make_reader(dev, ctx)
                readers.append(reader)
                reader.start()
        deadline = time.monotonic() + float(args.timeout)
        # I2C chips are polled here, at once rather than on their interval's grid; a chip
        # with nothing new yet (SCD4x's first measurement) is asked again when it is due.
        for chip in polled:
            while chip.name not in sink.readings and states[chip.name].state != "failing":
                due = chip.poll_once()
                if chip.name in sink.readings or states[chip.name].state == "failing":
                    break
                if due >= deadline or chip.stop_event.wait(max(0.0, due - time.monotonic())):
                    break
        with sink.cond:
            sink.cond.wait_for(lambda: settled() or time.monotonic() >= deadline,
                               max(0.0, deadline - time.monotonic()))
    finally:
        for r in readers:
            r.stop()
        for r in readers:
            r.join(5.0)
        for chip in polled:
            chip.close()
        buses.close()
        if sim is not None:
            sim.close()
    width = max(len(n) for n in names)
    dwidth = max(len(d.driver) for d in cfg.devices)
    ok = 0
    for dev in cfg.devices:
        got = sink.readings.get(dev.name)
        h = states[dev.name]
        if got is not None:
            ok += 1
            print(f"{dev.name:<{width}}  {dev.driver:<{dwidth}}  ok       {format_values(got.values)}")
        elif h.last_error:
            print(f"{dev.name:<{width}}  {dev.driver:<{dwidth}}  FAILING  {h.last_error}")
        else:
            print(f"{dev.name:<{width}}  {dev.driver:<{dwidth}}  NO DATA  nothing within {args.timeout:g} s")
    total = len(names)
    print(f"{ok} of {total} device{'s' if total != 1 else ''} read", file=sys.stderr)
    return 0 if ok == total else 1
