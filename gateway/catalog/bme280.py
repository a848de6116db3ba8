"""`driver: bme280` — Bosch BME280 temperature, humidity and pressure."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.model import Section
from gateway.config.types import I2CAddress
from gateway.drivers.bme280 import BME280

Oversampling = Literal[0, 1, 2, 4, 8, 16]


class BME280Oversampling(Section):
    temperature: Literal[1, 2, 4, 8, 16] = Field(default=1, description="Temperature oversampling.")
    pressure: Oversampling = Field(default=1, description="Pressure oversampling (0: skip).")
    humidity: Oversampling = Field(default=1, description="Humidity oversampling (0: skip).")


class BME280Config(SimulatedI2CDevice):
    driver: Literal["bme280"]
    address: I2CAddress = Field(default=0x76, description="0x76 (SDO low) or 0x77 (SDO high).")
    oversampling: BME280Oversampling = Field(default_factory=BME280Oversampling)
    iir_filter: Literal[0, 2, 4, 8, 16] = Field(default=0, description="IIR filter coefficient.")


def _make(bus: Any, cfg: BME280Config) -> BME280:
    return BME280(
        bus,
        cfg.address,
        oversampling_temperature=cfg.oversampling.temperature,
        oversampling_pressure=cfg.oversampling.pressure,
        oversampling_humidity=cfg.oversampling.humidity,
        iir_filter=cfg.iir_filter,
    )


def _publishes(cfg: BME280Config) -> tuple[str, ...]:
    # Oversampling 0 skips that measurement: the driver then leaves its key out.
    return ("temperature_c",
            *(("humidity_pct",) if cfg.oversampling.humidity else ()),
            *(("pressure_hpa",) if cfg.oversampling.pressure else ()))


SPEC = DeviceSpec(
    driver="bme280",
    summary="Bosch BME280 temperature, humidity and pressure",
    kind="i2c",
    config=BME280Config,
    quantities=("temperature_c", "humidity_pct", "pressure_hpa"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x76, 0x77), id_register=0xD0, id_values=frozenset({0x60})),
    reference="Bosch BST-BME280-DS002",
    manufacturer="Bosch Sensortec",
    model="BME280",
    publishes=_publishes,
    # §4.2.3: temperature in 0.01 °C, pressure in 1/256 Pa, humidity in 1/1024 %RH.
    resolution=lambda cfg: {"temperature_c": 0.01, "pressure_hpa": 1 / 25600,
                            "humidity_pct": 1 / 1024},
)
