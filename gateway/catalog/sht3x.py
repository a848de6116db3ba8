"""`driver: sht3x` — Sensirion SHT30/SHT31/SHT35 humidity and temperature."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.types import I2CAddress
from gateway.drivers.sht3x import SHT3x


class SHT3xConfig(SimulatedI2CDevice):
    driver: Literal["sht3x"]
    address: I2CAddress = Field(default=0x44, description="0x44 (ADDR low) or 0x45 (ADDR high).")
    repeatability: Literal["high", "medium", "low"] = Field(
        default="high", description="Measurement repeatability (high: 15 ms, low: 4.5 ms per reading)."
    )


def _make(bus: Any, cfg: SHT3xConfig) -> SHT3x:
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
