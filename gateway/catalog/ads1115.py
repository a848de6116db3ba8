"""`driver: ads1115` — TI ADS1115 4-channel 16-bit ADC (single-ended inputs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.types import I2CAddress
from gateway.drivers.ads1115 import ADS1115

FULL_SCALES = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256)  # SBAS444 Config register, PGA


class ADS1115Config(SimulatedI2CDevice):
    driver: Literal["ads1115"]
    address: I2CAddress = Field(default=0x48, description="0x48..0x4B (ADDR to GND, VDD, SDA, SCL).")
    channels: list[Literal[0, 1, 2, 3]] = Field(
        default=[0, 1, 2, 3], min_length=1, description="Inputs to convert (AINx against GND)."
    )
    full_scale: float = Field(
        default=4.096,
        description="PGA full-scale range in volts: 6.144, 4.096, 2.048, 1.024, 0.512 or 0.256 "
        "(inputs never above VDD + 0.3 V).",
    )
    data_rate: Literal[8, 16, 32, 64, 128, 250, 475, 860] = Field(
        default=128, description="Samples per second (lower: less noise, longer conversion)."
    )

    @field_validator("full_scale")
    @classmethod
    def _pga(cls, v: float) -> float:
        if v not in FULL_SCALES:
            raise ValueError(f"must be one of {', '.join(str(f) for f in FULL_SCALES)} (volts)")
        return v

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("each channel at most once")
        return v


def _make(bus: Any, cfg: ADS1115Config) -> ADS1115:
    return ADS1115(bus, cfg.address, channels=cfg.channels, full_scale=cfg.full_scale,
                   data_rate=cfg.data_rate)


def _publishes(cfg: ADS1115Config) -> tuple[str, ...]:
    return tuple(f"ain{c}_v" for c in cfg.channels)


def _resolution(cfg: ADS1115Config) -> dict[str, float]:
    # 16-bit two's complement: one LSB is FS / 2^15 (SBAS444 §9.3.3, Table 3).
    return {f"ain{c}_v": cfg.full_scale / 32768 for c in cfg.channels}


SPEC = DeviceSpec(
    driver="ads1115",
    summary="TI ADS1115 16-bit ADC, 4 single-ended inputs",
    kind="i2c",
    config=ADS1115Config,
    quantities=("ain0_v", "ain1_v", "ain2_v", "ain3_v"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x48, 0x49, 0x4A, 0x4B)),  # no id register
    reference="TI SBAS444",
    manufacturer="Texas Instruments",
    model="ADS1115",
    publishes=_publishes,
    resolution=_resolution,
)
