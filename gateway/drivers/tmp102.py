"""Texas Instruments TMP102 digital temperature sensor.

Reference: TI SBOS397 (TMP102 datasheet). Pointer register §7.5.1 (Table 7-3),
temperature register §7.5.2 (Tables 7-4/7-5: 12-bit format, Table 7-1 data
examples), configuration register §7.5.3 (EM bit: 13-bit extended mode, range
up to 150 °C, Table 7-2 data examples).

The catalog entry follows the driver:
`driver: tmp102` — TI TMP102 temperature sensor.
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

from typing import Literal

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus
from gateway.config.model import I2CDevice
from gateway.config.schema import Field
from gateway.config.types import I2CAddress

DEFAULT_ADDRESS = 0x48  # ADD0 to GND; 0x49 V+, 0x4A SDA, 0x4B SCL (Table 6-4)

REG_TEMPERATURE = 0x00
REG_CONFIG = 0x01
REG_T_LOW = 0x02
REG_T_HIGH = 0x03

CONFIG_EM = 0x10  # byte 2, bit 4: extended mode (§7.5.3.6)
LSB_C = 0.0625  # °C per LSB in both modes (§7.5.2)


def decode_temperature(msb: int, lsb: int, extended: bool) -> float:
    """Temperature register bytes -> °C (§7.5.2).

    12-bit: the left-justified value is in bits 15..4. 13-bit (EM=1): bits 15..3,
    bit 0 set to 1 as a mode flag. Both two's complement, 0.0625 °C per LSB.
    """
    raw = (msb << 8) | lsb
    if extended:
        value = raw >> 3
        if value & 0x1000:
            value -= 0x2000
    else:
        value = raw >> 4
        if value & 0x800:
            value -= 0x1000
    return value * LSB_C


class TMP102:
    """TMP102 in continuous conversion mode (the power-on default, 4 Hz)."""

    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *, extended: bool = False) -> None:
        self.bus = bus
        self.address = address
        self.extended = extended
        cfg = bus.read_i2c_block_data(address, REG_CONFIG, 2)
        byte2 = (cfg[1] | CONFIG_EM) if extended else (cfg[1] & ~CONFIG_EM & 0xFF)
        if byte2 != cfg[1]:
            bus.write_i2c_block_data(address, REG_CONFIG, [cfg[0], byte2])

    def read(self) -> dict[str, float]:
        # One two-byte read: both halves of the same conversion.
        msb, lsb = self.bus.read_i2c_block_data(self.address, REG_TEMPERATURE, 2)
        return {"temperature_c": decode_temperature(msb, lsb, self.extended)}


# -- the catalog entry ------------------------------------------------------------

class TMP102Config(I2CDevice):
    driver: Literal["tmp102"]
    address: I2CAddress = Field(default=0x48, description="0x48..0x4B (ADD0 pin).")
    extended: bool = Field(default=False, description="13-bit extended mode (up to 150 °C).")


def _make(bus: I2CBus, cfg: TMP102Config) -> TMP102:
    return TMP102(bus, cfg.address, extended=cfg.extended)


SPEC = DeviceSpec(
    driver="tmp102",
    summary="TI TMP102 temperature",
    kind="i2c",
    config=TMP102Config,
    quantities=("temperature_c",),
    make_driver=_make,
    # No id register: recognised by address only.
    probe=ChipProbe(addresses=(0x48, 0x49, 0x4A, 0x4B)),
    reference="TI SBOS397",
    manufacturer="Texas Instruments",
    model="TMP102",
    resolution=lambda cfg: {"temperature_c": 0.0625},  # 12/13-bit, 0.0625 °C per LSB
)
