"""`driver: sht4x` — Sensirion SHT40/SHT41/SHT45 humidity and temperature."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.types import I2CAddress
from gateway.drivers.sht4x import SHT4x


class SHT4xConfig(SimulatedI2CDevice):
    driver: Literal["sht4x"]
    address: I2CAddress = Field(default=0x44, description="0x44 (SHT4x-A), 0x45 (-B) or 0x46 (-C).")
    precision: Literal["high", "medium", "low"] = Field(
        default="high", description="Measurement precision (high: 8.3 ms, low: 1.6 ms)."
    )


def _make(bus: Any, cfg: SHT4xConfig) -> SHT4x:
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
