"""Sensirion SHT3x (SHT30/SHT31/SHT35) humidity and temperature sensor.

Reference: Sensirion "Datasheet SHT3x-DIS" (v7, 2022). Single-shot commands
§4.3 Table 9, measurement duration Table 4 (§2.2), readout §4.4, soft reset
§4.9, status register §4.11, CRC §4.12 (Table 19: poly 0x31, init 0xFF),
conversion §4.13.

The commands without clock stretching are used: the Raspberry Pi's I2C block
mishandles clock stretching, and while a measurement is running the chip NACKs
its read header instead (§4.4), which the driver treats as "not ready yet".

The catalog entry follows the driver:
`driver: sht3x` — Sensirion SHT30/SHT31/SHT35 humidity and temperature.
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

DEFAULT_ADDRESS = 0x44  # ADDR pin low; 0x45 with ADDR high (§3.7 Table 7)

Repeatability = Literal["high", "medium", "low"]

#: Single shot, clock stretching disabled (§4.3 Table 9): repeatability -> command.
CMD_SINGLE_SHOT: dict[str, int] = {"high": 0x2400, "medium": 0x240B, "low": 0x2416}
#: Maximum measurement duration in seconds (Table 4).
MEASUREMENT_TIME_S: dict[str, float] = {"high": 0.0155, "medium": 0.0065, "low": 0.0045}
CMD_SOFT_RESET = 0x30A2  # §4.9
CMD_READ_STATUS = 0xF32D  # §4.11
CMD_CLEAR_STATUS = 0x3041


def convert(s_t: int, s_rh: int) -> dict[str, float]:
    """Raw sensor words -> physical values (§4.13): T = -45 + 175·S/(2^16-1), RH = 100·S/(2^16-1)."""
    return {
        "temperature_c": round(-45.0 + 175.0 * s_t / 65535.0, 3),
        "humidity_pct": round(100.0 * s_rh / 65535.0, 3),
    }


class SHT3x:
    """SHT3x in single-shot mode: one measurement command and one 6-byte read per `read()`."""

    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *,
                 repeatability: Repeatability = "high", sleep: Sleep = time.sleep) -> None:
        if repeatability not in CMD_SINGLE_SHOT:
            raise ValueError(f"repeatability must be high, medium or low, not {repeatability!r}")
        self.bus = bus
        self.address = address
        self.repeatability = repeatability
        self._sleep = sleep
        # The status register is the one thing to read without a measurement; reading it
        # proves a chip that speaks this command set (and a good CRC) is there.
        self.status = self.read_status()

    def _command(self, cmd: int) -> None:
        write_bytes(self.bus, self.address, [cmd >> 8, cmd & 0xFF])

    def read_status(self) -> int:
        self._command(CMD_READ_STATUS)
        (status,) = check_words(read_bytes(self.bus, self.address, 3), "SHT3x status")
        return status

    def soft_reset(self) -> None:
        self._command(CMD_SOFT_RESET)
        self._sleep(0.0015)  # t_SR max 1.5 ms (Table 5)

    def read(self) -> dict[str, float]:
        self._command(CMD_SINGLE_SHOT[self.repeatability])
        budget = MEASUREMENT_TIME_S[self.repeatability]
        self._sleep(budget)
        # §4.4: while the measurement runs, the sensor does not acknowledge its read header.
        data = read_when_ready(self.bus, self.address, 6, budget, self._sleep, "SHT3x")
        s_t, s_rh = check_words(data, f"SHT3x at 0x{self.address:02x}")
        return convert(s_t, s_rh)


# -- the catalog entry ------------------------------------------------------------

class SHT3xConfig(I2CDevice):
    driver: Literal["sht3x"]
    address: I2CAddress = Field(default=0x44, description="0x44 (ADDR low) or 0x45 (ADDR high).")
    repeatability: Literal["high", "medium", "low"] = Field(
        default="high", description="Measurement repeatability (high: 15 ms, low: 4.5 ms per reading)."
    )


def _make(bus: I2CBus, cfg: SHT3xConfig) -> SHT3x:
    return SHT3x(bus, cfg.address, repeatability=cfg.repeatability)


SPEC = DeviceSpec(
    driver="sht3x",
    summary="Sensirion SHT3x temperature and humidity",
    kind="i2c",
    config=SHT3xConfig,
    quantities=("temperature_c", "humidity_pct"),
    make_driver=_make,
    # No id register (a status word only): recognised by address.
    probe=ChipProbe(addresses=(0x44, 0x45)),
    reference="Sensirion Datasheet SHT3x-DIS",
    manufacturer="Sensirion",
    model="SHT3x",
    resolution=lambda cfg: {"temperature_c": 175 / 65535, "humidity_pct": 100 / 65535},
)
