"""`driver: bh1750` — ROHM BH1750 ambient light sensor."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.types import I2CAddress
from gateway.drivers.bh1750 import BH1750, counts_to_lux


class BH1750Config(SimulatedI2CDevice):
    driver: Literal["bh1750"]
    address: I2CAddress = Field(default=0x23, description="0x23 (ADDR low) or 0x5C (ADDR high).")
    mode: Literal["high", "high2", "low"] = Field(
        default="high",
        description="Resolution: high (1 lx), high2 (0.5 lx), low (4 lx, 24 ms instead of 180 ms).",
    )
    mtreg: int = Field(
        default=69, ge=31, le=254,
        description="Measurement time register: higher = more sensitive and slower (69 default).",
    )


def _make(bus: Any, cfg: BH1750Config) -> BH1750:
    return BH1750(bus, cfg.address, mode=cfg.mode, mtreg=cfg.mtreg)


def _resolution(cfg: BH1750Config) -> dict[str, float]:
    # One count (low resolution mode steps by 4 counts).
    return {"illuminance_lx": counts_to_lux(4 if cfg.mode == "low" else 1, cfg.mode, cfg.mtreg)}


SPEC = DeviceSpec(
    driver="bh1750",
    summary="ROHM BH1750 ambient light",
    kind="i2c",
    config=BH1750Config,
    quantities=("illuminance_lx",),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x23, 0x5C)),  # no id register
    reference="ROHM BH1750FVI datasheet",
    manufacturer="ROHM",
    model="BH1750",
    resolution=_resolution,
)
