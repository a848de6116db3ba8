"""Shared base of the I2C chip config models: the `sim:` block is checked at load time.

A typo under `sim:` (an unknown fault, a quantity the chip does not measure, a
bad profile) is a config error reported by `edge-gateway check`, not a crash
when the simulator starts. The check itself is the simulator's, plugged in from
above (`gateway.config.sim`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, field_validator

from gateway.config.model import I2CDevice
from gateway.config.sim import validate_sim


class SimulatedI2CDevice(I2CDevice):
    @field_validator("sim")
    @classmethod
    def _check_sim(cls, v: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if v is None:
            return v
        driver = info.data.get("driver")
        if isinstance(driver, str):
            validate_sim(driver, 0x10, v)
        return v
