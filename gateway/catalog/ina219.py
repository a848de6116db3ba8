"""`driver: ina219` — TI INA219 current, bus voltage and power monitor."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.catalog._i2c import SimulatedI2CDevice
from gateway.catalog.spec import ChipProbe, DeviceSpec
from gateway.config.types import I2CAddress
from gateway.drivers.ina219 import BUS_LSB_V, INA219, SHUNT_LSB_V, calibration


class INA219Config(SimulatedI2CDevice):
    driver: Literal["ina219"]
    address: I2CAddress = Field(default=0x40, description="0x40..0x4F (A0/A1 pins).")
    shunt_ohms: float = Field(default=0.1, gt=0, le=10, description="Shunt resistor in ohms.")
    max_current_a: float = Field(
        default=3.2, gt=0, le=100, description="Largest expected current; sets the current resolution."
    )
    bus_range_v: Literal[16, 32] = Field(default=32, description="Bus voltage range.")
    shunt_range_v: float = Field(
        default=0.32, description="Shunt voltage full scale (PGA): 0.04, 0.08, 0.16 or 0.32 V."
    )

    @field_validator("shunt_range_v")
    @classmethod
    def _pga(cls, v: float) -> float:
        if v not in (0.04, 0.08, 0.16, 0.32):
            raise ValueError("must be 0.04, 0.08, 0.16 or 0.32 (volts)")
        return v


def _make(bus: Any, cfg: INA219Config) -> INA219:
    return INA219(bus, cfg.address, shunt_ohms=cfg.shunt_ohms, max_current_a=cfg.max_current_a,
                  bus_range_v=cfg.bus_range_v, shunt_range_v=cfg.shunt_range_v)


def _resolution(cfg: INA219Config) -> dict[str, float]:
    _, current_lsb = calibration(cfg.max_current_a, cfg.shunt_ohms)
    return {"bus_voltage_v": BUS_LSB_V, "shunt_voltage_v": SHUNT_LSB_V,
            "current_a": current_lsb, "power_w": 20 * current_lsb}  # SBOS448 §8.5.1


SPEC = DeviceSpec(
    driver="ina219",
    summary="TI INA219 current, voltage and power",
    kind="i2c",
    config=INA219Config,
    quantities=("bus_voltage_v", "shunt_voltage_v", "current_a", "power_w"),
    make_driver=_make,
    probe=ChipProbe(addresses=tuple(range(0x40, 0x50))),
    reference="TI SBOS448",
    manufacturer="Texas Instruments",
    model="INA219",
    resolution=_resolution,
)
