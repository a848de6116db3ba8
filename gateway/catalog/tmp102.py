"""`driver: tmp102` — TI TMP102 temperature sensor."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.types import I2CAddress
from gateway.drivers.tmp102 import TMP102


class TMP102Config(SimulatedI2CDevice):
    driver: Literal["tmp102"]
    address: I2CAddress = Field(default=0x48, description="0x48..0x4B (ADD0 pin).")
    extended: bool = Field(default=False, description="13-bit extended mode (up to 150 °C).")


def _make(bus: Any, cfg: TMP102Config) -> TMP102:
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
