"""Sensirion SHT4x (SHT40/SHT41/SHT45) humidity and temperature sensor.

Reference: Sensirion "Datasheet SHT4x" (v6.6, 2024). I2C addresses §4.1
(0x44 for SHT4x-A, 0x45 -B, 0x46 -C), command overview §4.5 Table 7 (0xFD
high precision 8.3 ms max, 0xF6 medium 4.5 ms, 0xE0 low 1.6 ms; 0x89 serial
number; 0x94 soft reset), CRC §4.4 (same CRC-8 as the SHT3x), conversion §4.6:
T = -45 + 175·S_T/(2^16-1), RH = -6 + 125·S_RH/(2^16-1), cropped to 0..100 %RH.

While measuring the chip NACKs its read header, which is "not ready yet".

The catalog entry follows the driver:
`driver: sht4x` — Sensirion SHT40/SHT41/SHT45 humidity and temperature.
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

import time
from typing import Literal

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus, Sleep
from gateway.config.model import I2CDevice
from gateway.config.schema import Field
from gateway.config.types import I2CAddress
from gateway.drivers import check_words, read_bytes, read_when_ready, write_bytes

DEFAULT_ADDRESS = 0x44

Precision = Literal["high", "medium", "low"]
CMD_MEASURE: dict[str, int] = {"high": 0xFD, "medium": 0xF6, "low": 0xE0}
MEASUREMENT_TIME_S: dict[str, float] = {"high": 0.0083, "medium": 0.0045, "low": 0.0016}
CMD_SERIAL = 0x89
CMD_SOFT_RESET = 0x94


def convert(s_t: int, s_rh: int) -> dict[str, float]:
    """§4.6: raw words -> °C and %RH (RH cropped to the physical range, as the datasheet advises)."""
    rh = -6.0 + 125.0 * s_rh / 65535.0
    return {
        "temperature_c": round(-45.0 + 175.0 * s_t / 65535.0, 3),
        "humidity_pct": round(min(100.0, max(0.0, rh)), 3),
    }


class SHT4x:
    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *, precision: Precision = "high",
                 sleep: Sleep = time.sleep) -> None:
        if precision not in CMD_MEASURE:
            raise ValueError(f"precision must be high, medium or low, not {precision!r}")
        self.bus = bus
        self.address = address
        self.precision = precision
        self._sleep = sleep
        self.serial_number = self.read_serial()

    def read_serial(self) -> int:
        write_bytes(self.bus, self.address, [CMD_SERIAL])
        self._sleep(0.001)
        hi, lo = check_words(read_bytes(self.bus, self.address, 6), "SHT4x serial number")
        return (hi << 16) | lo

    def read(self) -> dict[str, float]:
        write_bytes(self.bus, self.address, [CMD_MEASURE[self.precision]])
        budget = MEASUREMENT_TIME_S[self.precision]
        self._sleep(budget)
        data = read_when_ready(self.bus, self.address, 6, budget, self._sleep, "SHT4x")
        s_t, s_rh = check_words(data, f"SHT4x at 0x{self.address:02x}")
        return convert(s_t, s_rh)


# -- the catalog entry ------------------------------------------------------------

class SHT4xConfig(I2CDevice):
    driver: Literal["sht4x"]
    address: I2CAddress = Field(default=0x44, description="0x44 (SHT4x-A), 0x45 (-B) or 0x46 (-C).")
    precision: Literal["high", "medium", "low"] = Field(
        default="high", description="Measurement precision (high: 8.3 ms, low: 1.6 ms)."
    )


def _make(bus: I2CBus, cfg: SHT4xConfig) -> SHT4x:
    return SHT4x(bus, cfg.address, precision=cfg.precision)


SPEC = DeviceSpec(
    driver="sht4x",
    summary="Sensirion SHT4x temperature and humidity",
    kind="i2c",
    config=SHT4xConfig,
    quantities=("temperature_c", "humidity_pct"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x44, 0x45, 0x46)),
    reference="Sensirion Datasheet SHT4x",
    manufacturer="Sensirion",
    model="SHT4x",
    resolution=lambda cfg: {"temperature_c": 175 / 65535, "humidity_pct": 125 / 65535},
)
