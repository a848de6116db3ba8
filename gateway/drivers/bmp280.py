"""Bosch BMP280 pressure and temperature sensor (the BME280 without humidity).

Reference: Bosch Sensortec BST-BMP280-DS001 (rev 1.26). Memory map §4.2
(chip id 0x58 at 0xD0, §4.3.1), ctrl_meas §4.3.4, config §4.3.5, data
0xF7..0xFC §4.3.6-4.3.7, trimming layout §3.11.2 Table 17, compensation
§3.11.3 (identical to the BME280's, so `gateway.drivers.bme280` holds it in one
place), worked example §3.12, measurement times §3.8.1 Table 13.

The catalog entry follows the driver:
`driver: bmp280` — Bosch BMP280 pressure and temperature.
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

import time
from typing import Literal

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus, Sleep
from gateway.config.model import I2CDevice, Section
from gateway.config.schema import Field
from gateway.config.types import I2CAddress
from gateway.drivers import WrongChipError
from gateway.drivers import bme280 as formulas

DEFAULT_ADDRESS = 0x76  # SDO to GND; 0x77 with SDO to VDDIO (§5.2)

REG_CALIB00 = 0x88  # 0x88..0x9F: dig_T1..dig_P9 (24 bytes)
REG_CHIP_ID = 0xD0
REG_RESET = 0xE0
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_PRESS_MSB = 0xF7  # 0xF7..0xFC: press[3], temp[3]

CHIP_IDS = (0x56, 0x57, 0x58)  # samples and mass production (§4.3.1)
CHIP_ID_BME280 = 0x60
STATUS_MEASURING = 0x08
MODE_FORCED = 0x01
OVERSAMPLING = formulas.OVERSAMPLING


class BMP280:
    """BMP280 in forced mode: one conversion and one 6-byte burst read per `read()`."""

    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *,
                 oversampling_temperature: int = 1, oversampling_pressure: int = 1,
                 iir_filter: int = 0, sleep: Sleep = time.sleep) -> None:
        if oversampling_temperature not in OVERSAMPLING or oversampling_temperature == 0:
            raise ValueError(f"oversampling_temperature must be 1..16, not {oversampling_temperature}")
        if oversampling_pressure not in OVERSAMPLING:
            raise ValueError(f"oversampling_pressure must be one of {sorted(OVERSAMPLING)}")
        if iir_filter not in (0, 2, 4, 8, 16):
            raise ValueError(f"iir_filter must be 0, 2, 4, 8 or 16, not {iir_filter}")
        self.bus = bus
        self.address = address
        self._osrs = (oversampling_temperature, oversampling_pressure)
        self._sleep = sleep
        chip_id = bus.read_byte_data(address, REG_CHIP_ID)
        if chip_id == CHIP_ID_BME280:
            raise WrongChipError(
                f"chip at 0x{address:02x} is a BME280 (id 0x60), not a BMP280: use driver: bme280 "
                "to get its humidity too"
            )
        if chip_id not in CHIP_IDS:
            raise WrongChipError(f"chip at 0x{address:02x} has id 0x{chip_id:02x}, not a BMP280 (0x58)")
        block = bus.read_i2c_block_data(address, REG_CALIB00, 24)
        # Same layout as the BME280's first calibration block (Table 17); no humidity part.
        self.calibration = formulas.Calibration.from_registers([*block, 0, 0], [0] * 7)
        bus.write_byte_data(address, REG_CTRL_MEAS, 0x00)  # sleep mode before config (§3.6)
        filter_code = {0: 0, 2: 1, 4: 2, 8: 3, 16: 4}[iir_filter]
        bus.write_byte_data(address, REG_CONFIG, filter_code << 2)

    def read(self) -> dict[str, float]:
        osrs_t, osrs_p = self._osrs
        bus, addr = self.bus, self.address
        bus.write_byte_data(
            addr, REG_CTRL_MEAS, (OVERSAMPLING[osrs_t] << 5) | (OVERSAMPLING[osrs_p] << 2) | MODE_FORCED
        )
        # Table 13 maxima match 1.25 + 2.3·osrs_t + 2.3·osrs_p + 0.575 ms (the BME280 §9.1 formula).
        formulas.wait_for_conversion(
            bus, addr, formulas.measurement_time_s(osrs_t, osrs_p, 0), self._sleep, "BMP280"
        )
        d = list(bus.read_i2c_block_data(addr, REG_PRESS_MSB, 6))
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        temperature, t_fine = formulas.compensate_temperature(adc_t, self.calibration)
        out = {"temperature_c": round(temperature, 2)}
        if osrs_p:
            pressure = formulas.compensate_pressure(adc_p, t_fine, self.calibration)
            out["pressure_hpa"] = round(pressure / 100, 4)
        return out


# -- the catalog entry ------------------------------------------------------------

class BMP280Oversampling(Section):
    temperature: Literal[1, 2, 4, 8, 16] = Field(default=1, description="Temperature oversampling.")
    pressure: Literal[0, 1, 2, 4, 8, 16] = Field(default=1, description="Pressure oversampling (0: skip).")


class BMP280Config(I2CDevice):
    driver: Literal["bmp280"]
    address: I2CAddress = Field(default=0x76, description="0x76 (SDO low) or 0x77 (SDO high).")
    oversampling: BMP280Oversampling = Field(default_factory=BMP280Oversampling)
    iir_filter: Literal[0, 2, 4, 8, 16] = Field(default=0, description="IIR filter coefficient.")


def _make(bus: I2CBus, cfg: BMP280Config) -> BMP280:
    return BMP280(bus, cfg.address, oversampling_temperature=cfg.oversampling.temperature,
                  oversampling_pressure=cfg.oversampling.pressure, iir_filter=cfg.iir_filter)


def _publishes(cfg: BMP280Config) -> tuple[str, ...]:
    # Pressure oversampling 0 skips the pressure measurement: no pressure key.
    return ("temperature_c", *(("pressure_hpa",) if cfg.oversampling.pressure else ()))


SPEC = DeviceSpec(
    driver="bmp280",
    summary="Bosch BMP280 pressure and temperature",
    kind="i2c",
    config=BMP280Config,
    quantities=("temperature_c", "pressure_hpa"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x76, 0x77), id_register=0xD0, id_values=frozenset({0x56, 0x57, 0x58})),
    reference="Bosch BST-BMP280-DS001",
    manufacturer="Bosch Sensortec",
    model="BMP280",
    publishes=_publishes,
    resolution=lambda cfg: {"temperature_c": 0.01, "pressure_hpa": 1 / 25600},
)
