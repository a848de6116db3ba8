"""`driver: gpio_contact` — a door or window contact, float switch or button on a GPIO line."""

from __future__ import annotations

from typing import Literal

from gateway.catalog.spec import DeviceSpec
from gateway.config.schema import Field
from gateway.config.types import Duration
from gateway.drivers.gpio_input import GpioLineConfig


class GpioContactConfig(GpioLineConfig):
    driver: Literal["gpio_contact"]
    interval: Duration = Field(default=60.0, description="Also publish the state this often.")
    debounce: Duration = Field(default=0.02, description="The line must be still this long (20 ms).")
    device_class: str = Field(
        default="opening",
        description="Home Assistant binary_sensor class (door, window, opening, moisture...).",
    )


SPEC = DeviceSpec(
    driver="gpio_contact",
    summary="Contact on a GPIO line (door, window, float switch), on change and periodically",
    kind="kernel",
    config=GpioContactConfig,
    quantities=("closed",),
    gpio_input="contact",
    reference="libgpiod v2 (Linux GPIO character device uAPI v2)",
)
