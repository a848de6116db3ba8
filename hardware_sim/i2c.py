"""A simulated I2C bus with the `smbus2.SMBus` interface, and chip models behind it.

Chips see transactions the way real silicon does: a write of bytes (usually a
register pointer, maybe data) and a read of N bytes. The bus maps each SMBus
call onto those, so a driver exercises exactly the byte sequences it would send
to hardware. An address nobody answers raises `OSError(121)` (EREMOTEIO, what
the Linux i2c-dev driver reports for a NACK).
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from gateway.config.sim import set_sim_validator
from gateway.slots import SlotsRecord
from hardware_sim.profiles import Profile, make_profile

I2C_M_RD = 0x0001  # linux/i2c.h


def nack(address: int) -> OSError:
    return OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO) + f" (no ACK from 0x{address:02x})")


def eio() -> OSError:
    return OSError(errno.EIO, os.strerror(errno.EIO))


def _crc_table(poly: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & 0x80 else crc << 1
        table.append(crc & 0xFF)
    return table


_CRC31 = _crc_table(0x31)


def crc8_0x31(data: bytes) -> int:
    """CRC-8 poly 0x31, init 0xFF (Sensirion, Aosong), table-driven for the chip models."""
    crc = 0xFF
    for b in data:
        crc = _CRC31[crc ^ b]
    return crc


def sensirion_words(words: Iterable[int], corrupt: bool = False) -> bytes:
    """16-bit words -> MSB, LSB, CRC triplets as Sensirion chips send them."""
    out = bytearray()
    for w in words:
        pair = bytes([(w >> 8) & 0xFF, w & 0xFF])
        crc = crc8_0x31(pair)
        out += pair + bytes([crc ^ 0xFF if corrupt else crc])
    return bytes(out)


class Faults(SlotsRecord):
    """Faults a simulated chip can be told to show (all off by default)."""

    # A SlotsRecord: simulate mode loads this module into the daemon (gateway.slots).
    __slots__ = ("nack", "eio_burst", "absent_until", "stuck", "corrupt_crc",
                 "slow_conversion")

    def __init__(self, nack: bool = False, eio_burst: int = 0, absent_until: float = 0.0,
                 stuck: bool = False, corrupt_crc: bool = False,
                 slow_conversion: bool = False) -> None:
        self.nack = nack  # every transaction NACKed (unplugged / dead chip)
        self.eio_burst = eio_burst  # the next N transactions fail with EIO
        self.absent_until = absent_until  # NACK until this sim time (seconds since start)
        self.stuck = stuck  # values frozen at the last conversion
        self.corrupt_crc = corrupt_crc  # chips with CRCs send a wrong one
        self.slow_conversion = slow_conversion  # conversions never finish in time

    @classmethod
    def from_config(cls, spec: dict[str, Any] | None) -> Faults:
        from gateway.config.types import parse_duration

        if spec is not None and not isinstance(spec, dict):
            raise ValueError("faults: expected a mapping such as {eio_burst: 5, absent_for: 10s}")
        f = cls()
        for key, value in (spec or {}).items():
            if key == "absent_for":
                f.absent_until = float(parse_duration(value))
                if not f.absent_until >= 0:
                    raise ValueError(f"absent_for: expected a duration such as 5s, got {value!r}")
            elif key in {"nack", "stuck", "corrupt_crc", "slow_conversion"}:
                if not isinstance(value, bool):
                    raise ValueError(f"{key}: expected true or false, got {value!r}")
                setattr(f, key, value)
            elif key == "eio_burst":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"eio_burst: expected a number of transactions, got {value!r}")
                f.eio_burst = value
            else:
                raise ValueError(
                    f"unknown fault {key!r} (nack, eio_burst, absent_for, stuck, corrupt_crc, "
                    "slow_conversion)"
                )
        return f


class SimClock:
    """Seconds since the simulation started (monotonic), settable by tests."""

    def __init__(self, fixed: float | None = None) -> None:
        self._t0 = time.monotonic()
        self.fixed = fixed

    def __call__(self) -> float:
        return self.fixed if self.fixed is not None else time.monotonic() - self._t0


class SimChip:
    """Base of every chip model: transaction-level, with faults and value profiles."""

    #: Quantities the chip measures, with a default value each.
    DEFAULTS: dict[str, float] = {}

    def __init__(
        self,
        address: int,
        *,
        values: dict[str, Any] | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.address = address
        self.faults = faults or Faults()
        self.clock: Callable[[], float] = clock or SimClock()
        self.lock = threading.RLock()
        given = dict(values or {})
        unknown = set(given) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no quantity {sorted(unknown)[0]!r} "
                f"(it has {', '.join(sorted(self.DEFAULTS))})"
            )
        self.profiles: dict[str, Profile] = {
            key: make_profile(given.get(key), default) for key, default in self.DEFAULTS.items()
        }
        self._frozen: dict[str, float] | None = None
        self.transactions = 0

    # -- values -------------------------------------------------------------
    def set_value(self, key: str, value: float) -> None:
        """Pin a quantity to a constant (tests)."""
        if key not in self.DEFAULTS:
            raise KeyError(key)
        self.profiles[key] = make_profile(value)

    def values_now(self) -> dict[str, float]:
        """The physical values at this instant (frozen while `stuck`)."""
        if self.faults.stuck and self._frozen is not None:
            return dict(self._frozen)
        now = self.clock()
        v = {k: p(now) for k, p in self.profiles.items()}
        self._frozen = v
        return dict(v)

    # -- transactions (override) -------------------------------------------
    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, n: int) -> bytes:
        raise NotImplementedError

    # -- fault gate ----------------------------------------------------------
    def check_present(self) -> None:
        f = self.faults
        if f.nack or self.clock() < f.absent_until:
            raise nack(self.address)
        if f.eio_burst > 0:
            f.eio_burst -= 1
            raise eio()
        self.transactions += 1


class RegisterChip(SimChip):
    """A chip addressed by an 8-bit register pointer with auto-increment."""

    def __init__(self, address: int, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self.regs = bytearray(256)
        self.pointer = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0]
        for offset, value in enumerate(data[1:]):
            reg = (self.pointer + offset) & 0xFF
            self.regs[reg] = value
            self.on_register_write(reg, value)

    def read(self, n: int) -> bytes:
        self.before_read(self.pointer, n)
        out = bytes(self.regs[(self.pointer + i) & 0xFF] for i in range(n))
        self.pointer = (self.pointer + n) & 0xFF
        return out

    def on_register_write(self, reg: int, value: int) -> None:
        """A register was written (start a conversion, reset, ...)."""

    def before_read(self, reg: int, n: int) -> None:
        """A read from `reg` is about to happen (refresh status, data)."""


class SimBus:
    """A fake `smbus2.SMBus` whose devices are chip models at their addresses."""

    def __init__(self, bus: int = 1, chips: Iterable[SimChip] = ()) -> None:
        self.bus = bus
        self.fd: int | None = None
        self.chips: dict[int, SimChip] = {}
        for chip in chips:
            self.attach(chip)

    def attach(self, chip: SimChip) -> SimChip:
        self.chips[chip.address] = chip
        return chip

    def detach(self, address: int) -> None:
        self.chips.pop(address, None)

    def _chip(self, address: int) -> SimChip:
        chip = self.chips.get(address)
        if chip is None:
            raise nack(address)
        with chip.lock:  # fault counters change here; tests may flip faults from other threads
            chip.check_present()
        return chip

    # -- the smbus2.SMBus surface -------------------------------------------
    def open(self, bus: int) -> None:
        self.bus = bus

    def close(self) -> None:
        pass

    def __enter__(self) -> SimBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        self._chip(i2c_addr)

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        chip = self._chip(i2c_addr)
        with chip.lock:
            return chip.read(1)[0]

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        chip = self._chip(i2c_addr)
        with chip.lock:
            chip.write(bytes([value]))

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        chip = self._chip(i2c_addr)
        with chip.lock:
            chip.write(bytes([register]))
            return chip.read(1)[0]

    def write_byte_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        chip = self._chip(i2c_addr)
        with chip.lock:
            chip.write(bytes([register, value]))

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        chip = self._chip(i2c_addr)
        with chip.lock:
            chip.write(bytes([register]))
            lo, hi = chip.read(2)  # SMBus words are sent LSB first
            return lo | (hi << 8)

    def write_word_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        chip = self._chip(i2c_addr)
        with chip.lock:
            chip.write(bytes([register, value & 0xFF, (value >> 8) & 0xFF]))

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        if not 0 < length <= 32:
            raise ValueError("Desired block length over 32 bytes")  # smbus2's own limit
        chip = self._chip(i2c_addr)
        with chip.lock:
            chip.write(bytes([register]))
            return list(chip.read(length))

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: list[int], force: bool | None = None
    ) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        chip = self._chip(i2c_addr)
        with chip.lock:
            chip.write(bytes([register, *data]))

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """Combined transactions with `smbus2.i2c_msg` objects (repeated start).

        As in the kernel, the messages form one transfer: each addressed chip is
        checked once (a NACK or EIO fails the whole transfer), then the messages
        run in order. Read data is written into each message's own buffer.
        """
        checked: dict[int, SimChip] = {}
        for msg in i2c_msgs:
            if msg.addr not in checked:
                checked[msg.addr] = self._chip(msg.addr)
        for msg in i2c_msgs:
            chip = checked[msg.addr]
            with chip.lock:
                if msg.flags & I2C_M_RD:
                    data = chip.read(msg.len)
                    if len(data) != msg.len:
                        raise eio()
                    ctypes.memmove(msg.buf, data, msg.len)
                else:
                    chip.write(bytes(msg))

def make_chip(
    driver: str,
    address: int,
    sim: dict[str, Any] | None,
    clock: Callable[[], float] | None = None,
    *,
    lively: bool = True,
    seed: str = "",
) -> SimChip:
    """The chip model for a configured device (`driver`, `address`, its `sim:` block).

    With `lively`, quantities the `sim:` block does not pin drift slowly around
    their defaults (a few-minute sine), so a demo looks alive.
    """
    import importlib
    import zlib

    from hardware_sim.profiles import Sine

    try:
        module = importlib.import_module(f"hardware_sim.chips.{driver}")
    except ModuleNotFoundError:
        raise ValueError(f"the simulator has no model of {driver!r}") from None
    model: type[SimChip] = module.MODEL
    if sim is not None and not isinstance(sim, dict):
        raise ValueError("sim: expected a mapping (values, faults, options)")
    sim = dict(sim or {})
    values = sim.pop("values", None)
    faults = Faults.from_config(sim.pop("faults", None))
    options = sim.pop("options", {}) or {}
    if sim:
        raise ValueError(f"unknown sim key {sorted(sim)[0]!r} (values, faults, options)")
    if values is not None and not isinstance(values, dict):
        raise ValueError("values: expected a mapping of quantity: profile")
    values = dict(values or {})
    if lively:
        phase = float(zlib.crc32(seed.encode()) % 300)
        for key, default in model.DEFAULTS.items():
            if key not in values:
                amplitude = max(abs(default) * 0.004, 0.3)
                values[key] = Sine(mean=default, amplitude=amplitude, period=300.0, phase=phase)
    if not isinstance(options, dict):
        raise ValueError("options: expected a mapping of chip model options")
    try:
        return model(address, values=values, faults=faults, clock=clock, **options)
    except TypeError as exc:
        raise ValueError(f"options: {exc}") from None


def validate_sim(driver: str, address: int, sim: dict[str, Any] | None) -> None:
    """Raise ValueError if a device's `sim:` block could not build its chip model."""
    make_chip(driver, address, sim, clock=SimClock(fixed=0.0), lively=False)


# Plugged into the gateway's config from here (the config cannot import the simulator):
# once the simulator is loaded, a bad `sim:` block is a config error with its line.
set_sim_validator(validate_sim)
