"""Pure chip drivers: registers in, physical values out.

A driver takes any object with the `smbus2.SMBus` methods and has a `read()`
returning one consistent burst of quantities. No threads, no MQTT, no config.
"""

from __future__ import annotations


class DriverError(Exception):
    """A chip answered, but with something a working chip cannot say."""


class WrongChipError(DriverError):
    """The id register names another chip than the driver expects."""


class CrcError(DriverError):
    """A data word failed its CRC check."""


class ConversionTimeout(DriverError):
    """The chip did not finish a conversion in the time its datasheet allows."""


def s16(value: int) -> int:
    """Two's complement of a 16-bit value."""
    return value - 0x10000 if value & 0x8000 else value


def u16_le(lsb: int, msb: int) -> int:
    return lsb | (msb << 8)
