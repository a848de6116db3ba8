"""Which reader runs a device: chosen from its catalog entry, built with the daemon's context.

- I2C chips: an `I2CReader` scheduled on its bus's thread (`I2CBuses`).
- Line-oriented serial devices (the entry has `make_stream`): a `StreamReader`.
- Modbus RTU slaves: a `ModbusReader` (slaves on one port share its client).
- Devices the kernel drives (`kernel`): a `KernelReader` polling sysfs in a thread of its own,
  or a `GpioReader` blocked on a GPIO line's edge events.
"""

from __future__ import annotations

from gateway.catalog.registry import spec_for
from gateway.config.model import DeviceBase, I2CDevice, SerialDevice
from gateway.readers.base import ReaderContext
from gateway.readers.i2c import I2CBuses, I2CReader
from gateway.readers.runner import DeviceRunner


def make_reader(dev: DeviceBase, ctx: ReaderContext, buses: I2CBuses | None = None) -> DeviceRunner:
    """The reader for `dev` (not started). `buses`: required for I2C devices."""
    spec = spec_for(dev.driver)
    if spec.kind == "i2c":
        if buses is None or not isinstance(dev, I2CDevice):
            raise ValueError(f"{dev.name}: an I2C device needs the gateway's buses")
        return I2CReader(dev, spec, ctx, buses)
    # Here, not at the top: a config without such devices never loads their readers and
    # the drivers and protocols behind them (memory on a Pi).
    if spec.kind == "kernel":
        from gateway.readers.kernel import make_kernel_reader

        return make_kernel_reader(dev, spec, ctx)
    from gateway.protocols.modbus import ModbusRtuConfig
    from gateway.readers.serial import ModbusReader, StreamReader

    if isinstance(dev, ModbusRtuConfig):
        return ModbusReader(dev, ctx)
    if spec.make_stream is not None and isinstance(dev, SerialDevice):
        stream = spec.make_stream(dev, ctx.health.counters)
        return StreamReader(dev, ctx, decode=stream.decode, interval=stream.interval,
                            max_line=stream.max_line, silence_timeout=stream.silence_timeout,
                            framer=stream.framer)
    raise ValueError(f"{dev.name}: no reader for driver {dev.driver!r}")
