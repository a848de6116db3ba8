"""Simulated serial devices served on real pseudo-terminals (see pty.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hardware_sim.serial.gps import GpsSim
from hardware_sim.serial.lines import LinesSim
from hardware_sim.serial.modbus import ModbusSlaveSim
from hardware_sim.serial.pty import PtyDevice

__all__ = ["GpsSim", "LinesSim", "ModbusSlaveSim", "PtyDevice", "serve_devices"]

#: Default simulated values for Modbus registers whose key has no `sim.values` entry.
_MODBUS_DEFAULTS = {"voltage": 230.0, "current": 1.5, "power": 345.0, "frequency": 50.0,
                    "energy": 1234.5}


def serve_devices(devices: Iterable[Any], link_dir: str | None = None,
                  existing: dict[str, Any] | None = None) -> dict[str, PtyDevice]:
    """Start one simulated device per serial device config, keyed by device name.

    Modbus devices that share a port share one simulated slave line (one pty
    answering each configured unit id), as on a real RS-485 bus; `existing`
    (already served devices) lets a device added later join its line.
    """
    out: dict[str, PtyDevice] = {}
    lines_by_port: dict[str, ModbusSlaveSim] = {
        sim.config_port: sim for sim in (existing or {}).values()
        if isinstance(sim, ModbusSlaveSim) and sim.config_port is not None
    }
    for dev in devices:
        sim = dict(dev.sim or {})
        if dev.driver == "nmea":
            out[dev.name] = GpsSim(dev.name, sim, link_dir=link_dir,
                                   sentences=dev.sentences).start()
        elif dev.driver == "lines":
            fields = [(f.name, f.type) for f in dev.fields]
            out[dev.name] = LinesSim(dev.name, dev.format, fields, dev.delimiter, sim,
                                     link_dir=link_dir).start()
        elif dev.driver == "modbus_rtu":
            bus = lines_by_port.get(dev.port)
            if bus is None:
                bus = ModbusSlaveSim(dev.name, int(sim.get("bad_crc_every", 0)), link_dir=link_dir)
                bus.config_port = dev.port
                bus.reply_delay = float(sim.get("reply_delay", 0.0))
                bus.log_wire = bool(sim.get("log_wire", False))
                lines_by_port[dev.port] = bus
                bus.start()
            bus.users += 1
            load_register_map(bus, dev, sim)
            out[dev.name] = bus
    return out


def load_register_map(bus: ModbusSlaveSim, dev: Any, sim: dict[str, Any]) -> None:
    """Fill the slave's registers so the device's map decodes to `sim.values` (or defaults)."""
    from gateway.protocols.modbus import register_specs

    values: dict[str, Any] = dict(sim.get("values") or {})
    bus.add_unit(dev.slave)
    for spec in register_specs(dev):
        v = values.get(spec.key, values.get(spec.name, _MODBUS_DEFAULTS.get(spec.name, 1.0)))
        bus.set_value(dev.slave, dev.function, spec, float(v))
