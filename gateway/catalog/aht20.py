"""`driver: aht20` — Aosong AHT20 humidity and temperature."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.types import I2CAddress
from gateway.drivers.aht20 import AHT20


class AHT20Config(SimulatedI2CDevice):
    driver: Literal["aht20"]
    address: I2CAddress = Field(default=0x38, description="Fixed at 0x38.")


def _make(bus: Any, cfg: AHT20Config) -> AHT20:
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
