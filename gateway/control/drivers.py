"""One class per output kind: write a value, read it back where the hardware allows.

Each runs in the thread the control component chose for it (see control.py):

- `GpioRelay`: the control thread owns the line request (nothing else drives it).
- `ModbusCoil` / `ModbusRegister`: the write happens under the line's `SharedPort`
  lock, which a poll holds from its first request to its last reply, so a command's
  frames never land inside a poll's request/response on the wire. Writes are sent
  once (pymodbus' retries are off for them): a write whose reply was lost may or
  may not have happened, and repeating it is not ours to decide. The value is then
  read back and that is what the state reports.
- `SerialLine`: handed to the `lines` device's own reader thread (`LineCommand`),
  which owns the port, and confirmed by a reply matching `expect` when configured.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from typing import Any, Protocol

from gateway.config.model import Config
from gateway.config.outputs import (
    AnyOutput,
    GpioOutput,
    ModbusCoilOutput,
    ModbusRegisterOutput,
    SerialLineOutput,
)
from gateway.drivers.gpio_output import OutputLine
from gateway.protocols.modbus import RegisterSpec, encode_value, physical
from gateway.readers.serial import PORTS, LineCommand, SharedPort, SharedPorts, SlaveException

Value = bool | float


class WriteFailed(Exception):
    """The write failed or was not confirmed; `actual` is what the device holds, if known."""

    def __init__(self, reason: str, actual: Value | None = None) -> None:
        super().__init__(reason)
        self.actual = actual


class OutputDriver(Protocol):
    def open(self, initial: Value | None) -> None:
        """Take hold of the hardware; for a GPIO line, drive it to `initial` (off if None)."""

    def write(self, value: Value) -> Value:
        """Set `value`; returns the confirmed value (read back where possible)."""

    def read(self) -> Value | None:
        """The current value, or None when the hardware cannot tell."""

    def close(self) -> None: ...


class GpioRelay:
    def __init__(self, cfg: GpioOutput, make_line: Callable[[bool], OutputLine]) -> None:
        self.cfg = cfg
        self.make_line = make_line
        self.line: OutputLine | None = None

    def open(self, initial: Value | None) -> None:
        if self.line is None:
            self.line = self.make_line(bool(initial))

    def write(self, value: Value) -> Value:
        assert self.line is not None
        self.line.set(bool(value))
        actual = self.line.get()
        if actual != bool(value):
            raise WriteFailed(f"the line reads back {'ON' if actual else 'OFF'}", actual)
        return actual

    def read(self) -> Value | None:
        return None if self.line is None else self.line.get()

    def close(self) -> None:
        line, self.line = self.line, None
        if line is not None:
            line.close()


def gpiod_line(cfg: GpioOutput) -> Callable[[bool], OutputLine]:
    def make(initial: bool) -> OutputLine:
        try:
            from gateway.drivers.gpio_output import GpiodOutput
        except ImportError:
            raise OSError("gpiod is not installed: pip install 'edge-gateway[gpio]'") from None
        return GpiodOutput(cfg.chip, cfg.line, cfg.active_low, initial)

    return make


class ModbusDriver:
    """Shared by coils and registers: the device's port, slave and one-shot requests."""

    def __init__(self, cfg: ModbusCoilOutput | ModbusRegisterOutput, config: Config,
                 world: Any, ports: SharedPorts = PORTS) -> None:
        self.cfg = cfg
        self.device: Any = config.device(cfg.device)
        self.world = world
        self.ports = ports
        self.port: SharedPort | None = None

    def open(self, initial: Value | None) -> None:
        if self.port is not None:
            return
        try:
            import pymodbus.client  # noqa: F401
        except ImportError:
            raise OSError("pymodbus is not installed: pip install 'edge-gateway[modbus]'") from None
        if self.world is not None:
            # Simulate mode: the device's line is a pty the simulator serves.
            path = str(self.world.extras[self.device.name].path)
        else:
            path = self.device.port
        self.port = self.ports.acquire(path, self.device)

    def exchange(self, fn: Callable[[Any], Any]) -> Any:
        """Run `fn(client)` under the line's lock, with pymodbus' retries off."""
        from pymodbus.exceptions import ModbusException

        port = self.port
        if port is None:
            raise WriteFailed("the Modbus line is not open")
        with port.lock:  # no poll is in progress on this line while we hold it
            client = port.client
            if not client.connected and not client.connect():
                raise WriteFailed(f"cannot open {port.path}")
            transaction = getattr(client, "transaction", None)
            saved = getattr(transaction, "retries", None)
            if transaction is not None:
                transaction.retries = 0
            try:
                return fn(client)
            except ModbusException as exc:
                raise WriteFailed(f"slave {self.device.slave}: no valid reply ({exc})") from None
            finally:
                if transaction is not None and saved is not None:
                    transaction.retries = saved

    @staticmethod
    def checked(rr: Any, fc: int) -> Any:
        if rr.isError():
            raise WriteFailed(str(SlaveException(fc, int(getattr(rr, "exception_code", 0)))))
        return rr

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            self.ports.release(port)


class ModbusCoil(ModbusDriver):
    cfg: ModbusCoilOutput

    def write(self, value: Value) -> Value:
        slave, address = self.device.slave, self.cfg.address

        def run(client: Any) -> bool:
            self.checked(client.write_coil(address, bool(value), device_id=slave), 5)
            return self._read(client)

        actual: bool = self.exchange(run)
        if actual != bool(value):
            raise WriteFailed(f"the coil reads back {'ON' if actual else 'OFF'}", actual)
        return actual

    def _read(self, client: Any) -> bool:
        rr = self.checked(client.read_coils(self.cfg.address, count=1,
                                            device_id=self.device.slave), 1)
        return bool(rr.bits[0])

    def read(self) -> Value | None:
        result: bool = self.exchange(self._read)
        return result


class ModbusRegister(ModbusDriver):
    cfg: ModbusRegisterOutput

    @property
    def spec(self) -> RegisterSpec:
        c = self.cfg
        return RegisterSpec(c.address, c.name, c.type, c.word_order, c.scale, c.offset)

    def encode(self, value: float) -> list[int]:
        c = self.cfg
        raw = (value - c.offset) / c.scale
        if c.type != "float32":
            raw = round(raw)
        try:
            return encode_value(raw, c.type, c.word_order)
        except (struct.error, OverflowError) as exc:
            raise WriteFailed(f"{value:g} does not fit a {c.type} register: {exc}") from None

    def write(self, value: Value) -> Value:
        words = self.encode(float(value))
        slave, address = self.device.slave, self.cfg.address

        def run(client: Any) -> float:
            if len(words) == 1:
                self.checked(client.write_register(address, words[0], device_id=slave), 6)
            else:
                self.checked(client.write_registers(address, words, device_id=slave), 16)
            return self._read(client)

        actual: float = self.exchange(run)
        tolerance = abs(self.cfg.scale) / 2 if self.cfg.type != "float32" else (
            1e-6 * max(1.0, abs(float(value))))
        if not math.isclose(actual, float(value), abs_tol=tolerance):
            raise WriteFailed(f"wrote {float(value):g}, the register reads back {actual:g}", actual)
        return actual

    def _read(self, client: Any) -> float:
        rr = self.checked(client.read_holding_registers(self.cfg.address, count=self.cfg.registers,
                                                        device_id=self.device.slave), 3)
        try:
            return float(physical(self.spec, list(rr.registers)))
        except ValueError as exc:
            raise WriteFailed(f"read back: {exc}") from None

    def read(self) -> Value | None:
        result: float = self.exchange(self._read)
        return result


class SerialLine:
    def __init__(self, cfg: SerialLineOutput, reader: Callable[[], Any]) -> None:
        self.cfg = cfg
        self.reader = reader
        self.expect = re.compile(cfg.expect) if cfg.expect is not None else None

    def open(self, initial: Value | None) -> None:
        """Nothing to hold: the port is the `lines` device's reader's."""

    def line(self, value: Value) -> bytes:
        c = self.cfg
        if c.format is None:
            text = c.command_on if value else c.command_off
        else:
            v = float(value)
            text = c.format.format(value=int(v) if v.is_integer() else v)
        return (str(text) + c.ending).encode("utf-8")

    def write(self, value: Value) -> Value:
        from gateway.readers.serial import StreamReader

        reader = self.reader()
        if not isinstance(reader, StreamReader) or not reader.alive:
            raise WriteFailed(f"device {self.cfg.device!r} is not running")
        cmd = LineCommand(self.line(value), self.expect, self.cfg.reply_timeout)
        done = reader.submit(cmd)
        # The reader notices a missing reply after at most one read timeout more.
        try:
            done.result(self.cfg.reply_timeout + reader.cfg.timeout + 5.0)
        except TimeoutError as exc:
            raise WriteFailed(str(exc) or "no answer from the device's reader") from None
        except ConnectionError as exc:
            raise WriteFailed(str(exc)) from None
        return value

    def read(self) -> Value | None:
        return None

    def close(self) -> None:
        """Nothing held."""


def make_driver(out: AnyOutput, config: Config, world: Any,
                reader: Callable[[str], Any]) -> OutputDriver:
    if isinstance(out, GpioOutput):
        if world is not None:
            sim_line = world.outputs[out.name]
            return GpioRelay(out, sim_line.request)
        return GpioRelay(out, gpiod_line(out))
    if isinstance(out, ModbusCoilOutput):
        return ModbusCoil(out, config, world)
    if isinstance(out, ModbusRegisterOutput):
        return ModbusRegister(out, config, world)
    return SerialLine(out, lambda: reader(out.device))
