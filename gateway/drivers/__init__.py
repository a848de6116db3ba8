"""Pure chip drivers: registers in, physical values out.

A driver takes any object with the `smbus2.SMBus` methods and has a `read()`
returning one consistent burst of quantities. No threads, no MQTT, no config.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any


class DriverError(Exception):
    """A chip answered, but with something a working chip cannot say."""


class WrongChipError(DriverError):
    """The id register names another chip than the driver expects."""


class CrcError(DriverError):
    """A data word failed its CRC check."""


class ConversionTimeout(DriverError):
    """The chip did not finish a conversion in the time its datasheet allows."""


class NoNewData(Exception):
    """The chip measures on its own schedule and has nothing new since the last read.

    Not a fault: the reader skips this poll and asks again at the next slot, instead
    of holding the bus while the chip finishes (the SCD4x measures every 5 s).
    """


def s16(value: int) -> int:
    """Two's complement of a 16-bit value."""
    return value - 0x10000 if value & 0x8000 else value


def u16_le(lsb: int, msb: int) -> int:
    return lsb | (msb << 8)


def u16_be(msb: int, lsb: int) -> int:
    return (msb << 8) | lsb


def crc8_sensirion(data: bytes | Sequence[int]) -> int:
    """CRC-8, polynomial 0x31 (x^8 + x^5 + x^4 + 1), init 0xFF, no reflection, no final XOR.

    Used by Sensirion (SHT3x §4.12, SHT4x §4.4, SCD4x §3.11) and by the Aosong AHT20
    (§5.4) over each data word. Check value: CRC(0xBEEF) = 0x92 (SHT3x Table 19).
    """
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def check_words(data: bytes | Sequence[int], what: str) -> list[int]:
    """Split a Sensirion reply (MSB, LSB, CRC)* into 16-bit words, checking every CRC."""
    raw = bytes(data)
    if len(raw) % 3:
        raise DriverError(f"{what}: reply of {len(raw)} bytes is not a whole number of words")
    words: list[int] = []
    for i in range(0, len(raw), 3):
        msb, lsb, crc = raw[i], raw[i + 1], raw[i + 2]
        expected = crc8_sensirion(raw[i : i + 2])
        if crc != expected:
            raise CrcError(
                f"{what}: word {i // 3} (0x{msb:02x}{lsb:02x}) has CRC 0x{crc:02x}, "
                f"expected 0x{expected:02x}"
            )
        words.append(u16_be(msb, lsb))
    return words


def write_bytes(bus: Any, address: int, data: bytes | Sequence[int]) -> None:
    """One plain I2C write (START, address+W, bytes, STOP): command-based chips."""
    from smbus2 import i2c_msg

    bus.i2c_rdwr(i2c_msg.write(address, list(data)))


def read_bytes(bus: Any, address: int, n: int) -> bytes:
    """One plain I2C read of `n` bytes (START, address+R, bytes, STOP)."""
    from smbus2 import i2c_msg

    msg = i2c_msg.read(address, n)
    bus.i2c_rdwr(msg)
    return bytes(msg)


def is_nack(exc: OSError) -> bool:
    """Linux i2c-dev reports a NACKed address as EREMOTEIO (121); some adapters use ENXIO."""
    return exc.errno in (errno.EREMOTEIO, errno.ENXIO)


def read_when_ready(bus: Any, address: int, n: int, budget: float, sleep: Any,
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
