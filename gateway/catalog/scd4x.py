"""`driver: scd4x` — Sensirion SCD40/SCD41 CO2 sensor (with temperature and humidity).

The chip measures on its own schedule: every 5 s in `periodic` mode, about
every 30 s in `low_power` mode. Polling faster than that would find nothing
new at most polls, so an `interval` shorter than the mode's period is a config
error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.types import I2CAddress
from gateway.drivers.scd4x import SIGNAL_UPDATE_INTERVAL_S, SCD4x


class SCD4xConfig(SimulatedI2CDevice):
    driver: Literal["scd4x"]
    address: I2CAddress = Field(default=0x62, description="0x62 (the SCD4x has no address pin).")
    mode: Literal["periodic", "low_power"] = Field(
        default="periodic",
        description="periodic: a measurement every 5 s (interval 5s or more); "
        "low_power: about every 30 s (interval 30s or more).",
    )

    @model_validator(mode="after")
    def _interval_not_below_period(self) -> SCD4xConfig:
        period = SIGNAL_UPDATE_INTERVAL_S[self.mode]
        if self.interval < period:
            # Reported on `interval` (not on the device as a whole), so the error
            # line points at the key to change.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [InitErrorDetails(
                    type=PydanticCustomError(
                        "interval_below_period",
                        f"shorter than the {period:g} s measurement period of mode {self.mode}; "
                        f"use {period:g}s or more",
                    ),
                    loc=("interval",),
                    input=self.interval,
                )],
            )
        return self


def _make(bus: Any, cfg: SCD4xConfig) -> SCD4x:
    return SCD4x(bus, cfg.address, mode=cfg.mode)


SPEC = DeviceSpec(
    driver="scd4x",
    summary="Sensirion SCD4x (SCD40/SCD41) CO2, temperature and humidity",
    kind="i2c",
    config=SCD4xConfig,
    quantities=("co2_ppm", "temperature_c", "humidity_pct"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x62,)),  # no id register: commands only
    reference="Sensirion Datasheet SCD4x",
    manufacturer="Sensirion",
    model="SCD4x",
    # CO2 in whole ppm; temperature and humidity as 16-bit words (175 °C, 100 %RH span).
    resolution=lambda cfg: {"co2_ppm": 1.0, "temperature_c": 175 / 65535,
                            "humidity_pct": 100 / 65535},
)
