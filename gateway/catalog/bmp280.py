"""`driver: bmp280` — Bosch BMP280 pressure and temperature."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.model import Section
from gateway.config.types import I2CAddress
from gateway.drivers.bmp280 import BMP280


class BMP280Oversampling(Section):
    temperature: Literal[1, 2, 4, 8, 16] = Field(default=1, description="Temperature oversampling.")
    pressure: Literal[0, 1, 2, 4, 8, 16] = Field(default=1, description="Pressure oversampling (0: skip).")


class BMP280Config(SimulatedI2CDevice):
    driver: Literal["bmp280"]
    address: I2CAddress = Field(default=0x76, description="0x76 (SDO low) or 0x77 (SDO high).")
    oversampling: BMP280Oversampling = Field(default_factory=BMP280Oversampling)
    iir_filter: Literal[0, 2, 4, 8, 16] = Field(default=0, description="IIR filter coefficient.")


def _make(bus: Any, cfg: BMP280Config) -> BMP280:
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
