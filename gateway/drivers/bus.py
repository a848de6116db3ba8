"""Plain I2C transfers on anything with the `smbus2.SMBus` methods, and NACK handling.

`smbus2` is imported where a message is built, not at import: a process whose
config has no I2C device never loads it.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from gateway.catalog.spec import I2CBus, Sleep
from gateway.drivers.errors import ConversionTimeout


def write_bytes(bus: I2CBus, address: int, data: bytes | Sequence[int]) -> None:
    """One plain I2C write (START, address+W, bytes, STOP): command-based chips."""
    from smbus2 import i2c_msg

    bus.i2c_rdwr(i2c_msg.write(address, list(data)))


def read_bytes(bus: I2CBus, address: int, n: int) -> bytes:
    """One plain I2C read of `n` bytes (START, address+R, bytes, STOP)."""
    from smbus2 import i2c_msg

    msg = i2c_msg.read(address, n)
    bus.i2c_rdwr(msg)
    return bytes(msg)


def is_nack(exc: OSError) -> bool:
    """Linux i2c-dev reports a NACKed address as EREMOTEIO (121); some adapters use ENXIO."""
    return exc.errno in (errno.EREMOTEIO, errno.ENXIO)


def read_when_ready(bus: I2CBus, address: int, n: int, budget: float, sleep: Sleep,
                    what: str) -> bytes:
    """Read `n` bytes from a chip that NACKs its read header while still measuring.

    Sensirion chips (SHT3x §4.4, SHT4x §4.5) do so. After the datasheet's maximum
    `budget` has been slept, retry three times a third of it apart, then give up.
    """
    for attempt in range(4):
        try:
            return read_bytes(bus, address, n)
        except OSError as exc:
            if not is_nack(exc):
                raise
            if attempt == 3:
                raise ConversionTimeout(
                    f"{what} at 0x{address:02x}: no result {budget * 2:.4f} s after the command"
                ) from exc
            sleep(budget / 3)
    raise AssertionError("unreachable")
