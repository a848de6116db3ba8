"""Pure chip drivers: registers in, physical values out.

A driver takes any object with the `smbus2.SMBus` methods and has a `read()`
returning one consistent burst of quantities. No threads, no MQTT, no config.

One module per chip; what they share lives in `errors` (what a driver raises),
`crc` (word helpers, the Sensirion CRC-8) and `bus` (plain I2C transfers).
"""

from gateway.drivers.bus import is_nack, read_bytes, read_when_ready, write_bytes
from gateway.drivers.crc import check_words, crc8_sensirion, s16, u16_be, u16_le
from gateway.drivers.errors import ConversionTimeout, CrcError, DriverError, NoNewData, WrongChipError

__all__ = [
    "ConversionTimeout",
    "CrcError",
    "DriverError",
    "NoNewData",
    "WrongChipError",
    "check_words",
    "crc8_sensirion",
    "is_nack",
    "read_bytes",
    "read_when_ready",
    "s16",
    "u16_be",
    "u16_le",
    "write_bytes",
]
