"""Aosong AHT20 humidity and temperature sensor.

Reference: Aosong "AHT20 Product manual" (v1.0). Address 0x38 (§5.3), status
byte bits (§5.3 Table 10: bit 7 busy, bit 3 calibration enabled), measurement
sequence §5.4 (0x71 status, 0xBE 0x08 0x00 initialisation, 0xAC 0x33 0x00
trigger, wait 80 ms, 6 bytes + CRC), CRC-8 init 0xFF poly 0x31 over the six
bytes, signal conversion §6: RH = S_RH/2^20·100 %, T = S_T/2^20·200 - 50 °C.

The catalog entry follows the driver:
`driver: aht20` — Aosong AHT20 humidity and temperature.
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

import time
from typing import Literal

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus, Sleep
from gateway.config.model import I2CDevice
from gateway.config.schema import Field
from gateway.config.types import I2CAddress
from gateway.drivers import ConversionTimeout, CrcError, crc8_sensirion, read_bytes, write_bytes

DEFAULT_ADDRESS = 0x38

CMD_STATUS = 0x71
CMD_INIT = (0xBE, 0x08, 0x00)
CMD_TRIGGER = (0xAC, 0x33, 0x00)
CMD_SOFT_RESET = 0xBA
STATUS_BUSY = 0x80
STATUS_CALIBRATED = 0x08
MEASUREMENT_TIME_S = 0.080


def convert(s_rh: int, s_t: int) -> dict[str, float]:
    """§6: 20-bit raw values -> %RH and °C."""
    return {
        "temperature_c": round(s_t / 2**20 * 200.0 - 50.0, 3),
        "humidity_pct": round(s_rh / 2**20 * 100.0, 3),
    }


def unpack(frame: bytes) -> tuple[int, int]:
    """Status + 5 data bytes: RH[19:0] then T[19:0], packed MSB first (§5.4)."""
    s_rh = (frame[1] << 12) | (frame[2] << 4) | (frame[3] >> 4)
    s_t = ((frame[3] & 0x0F) << 16) | (frame[4] << 8) | frame[5]
    return s_rh, s_t


class AHT20:
    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *, sleep: Sleep = time.sleep) -> None:
        self.bus = bus
        self.address = address
        self._sleep = sleep
        if not self.status() & STATUS_CALIBRATED:
            write_bytes(bus, address, CMD_INIT)  # §5.4 step 1
            self._sleep(0.010)

    def status(self) -> int:
        write_bytes(self.bus, self.address, [CMD_STATUS])
        return read_bytes(self.bus, self.address, 1)[0]

    def read(self) -> dict[str, float]:
        write_bytes(self.bus, self.address, CMD_TRIGGER)
        self._sleep(MEASUREMENT_TIME_S)
        for _ in range(4):
            frame = read_bytes(self.bus, self.address, 7)
            if not frame[0] & STATUS_BUSY:
                break
            self._sleep(MEASUREMENT_TIME_S / 4)
        else:
            raise ConversionTimeout(f"AHT20 at 0x{self.address:02x} still busy after 160 ms")
        crc = crc8_sensirion(frame[:6])
        if crc != frame[6]:
            raise CrcError(f"AHT20 at 0x{self.address:02x}: CRC 0x{frame[6]:02x}, expected 0x{crc:02x}")
        return convert(*unpack(frame))


# -- the catalog entry ------------------------------------------------------------

class AHT20Config(I2CDevice):
    driver: Literal["aht20"]
    address: I2CAddress = Field(default=0x38, description="Fixed at 0x38.")


def _make(bus: I2CBus, cfg: AHT20Config) -> AHT20:
    return AHT20(bus, cfg.address)


SPEC = DeviceSpec(
    driver="aht20",
    summary="Aosong AHT20 temperature and humidity",
    kind="i2c",
    config=AHT20Config,
    quantities=("temperature_c", "humidity_pct"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x38,)),
    reference="Aosong AHT20 product manual",
    manufacturer="Aosong",
    model="AHT20",
    # 20-bit raw values: 200 °C / 2^20 and 100 %RH / 2^20.
    resolution=lambda cfg: {"temperature_c": 200 / 2**20, "humidity_pct": 100 / 2**20},
)
