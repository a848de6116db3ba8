"""`driver: pulse_counter` — rain gauge, anemometer, flow or energy meter pulses on a GPIO line."""

from __future__ import annotations

from typing import Literal

from gateway.catalog.spec import DeviceSpec
from gateway.config.schema import Field, model_validator
from gateway.config.types import Duration
from gateway.drivers.gpio_input import GpioLineConfig


class PulseCounterConfig(GpioLineConfig):
    driver: Literal["pulse_counter"]
    interval: Duration = Field(default=60.0, description="Publish the count this often.")
    debounce: Duration = Field(
        default=0.005,
        description="The line must have been still this long before a pulse counts (5 ms; below "
                    "half the fastest pulse period).",
    )
    per_pulse: float | None = Field(
        default=None, gt=0, description="Amount per pulse (a rain gauge's 0.2794 mm per tip).",
    )
    amount_key: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]*_[a-z0-9]+$",
        description="Key of that amount, with its unit (rain_mm, water_l); the running total is "
                    "rain_total_mm.",
    )

    @model_validator(mode="after")
    def _amount(self) -> PulseCounterConfig:
        if (self.per_pulse is None) != (self.amount_key is None):
            raise ValueError("per_pulse and amount_key go together")
        return self


def total_key(amount_key: str) -> str:
    """rain_mm -> rain_total_mm (the unit stays last, as every key's does)."""
    stem, _, unit = amount_key.rpartition("_")
    return f"{stem}_total_{unit}"


def _publishes(cfg: PulseCounterConfig) -> tuple[str, ...]:
    base = ("pulses", "pulse_rate_hz", "pulses_total")
    return base if cfg.amount_key is None else (*base, cfg.amount_key, total_key(cfg.amount_key))


SPEC = DeviceSpec(
    driver="pulse_counter",
    summary="Pulse counter on a GPIO line (rain gauge, anemometer, flow meter); total survives restarts",
    kind="kernel",
    config=PulseCounterConfig,
    quantities=("pulses", "pulse_rate_hz", "pulses_total"),
    reference="libgpiod v2 (Linux GPIO character device uAPI v2)",
    publishes=_publishes,
    gpio_input="counter",
)
