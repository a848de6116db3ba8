"""The catalog of device kinds: one module per `driver:` value.

Each module in this package defines `SPEC: DeviceSpec`, tying a config model
(its keys and defaults) to the pure driver or protocol that does the work.
Modules are discovered, so adding a chip means adding one file here, one in
`gateway/drivers/` and one in `hardware_sim/chips/`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import Field

from gateway.config.model import DeviceBase

if TYPE_CHECKING:
    from gateway.readers.base import Reader, ReaderContext


class I2CDriver(Protocol):
    """What every I2C driver offers (see DESIGN.md, Driver API)."""

    def read(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class ChipProbe:
    """How `edge-gateway scan` recognises a chip."""

    addresses: tuple[int, ...]
    #: Register holding an id, the values it may hold, and how to read it
    #: ("byte": read_byte_data; "word_be": 16-bit big-endian block read).
    id_register: int | None = None
    id_values: frozenset[int] = field(default_factory=frozenset)
    id_format: Literal["byte", "word_be"] = "byte"


@dataclass(frozen=True)
class DeviceSpec:
    driver: str
    summary: str
    kind: Literal["i2c", "serial", "virtual"]
    config: type[DeviceBase]
    quantities: tuple[str, ...]
    #: i2c: build the driver from an SMBus-like bus and the device's config.
    make_driver: Callable[[Any, Any], I2CDriver] | None = None
    #: serial/virtual: build the reader thread for the device.
    make_reader: Callable[[Any, ReaderContext], Reader] | None = None
    probe: ChipProbe | None = None
    #: Datasheet or standard the driver follows.
    reference: str = ""
    #: Who makes the chip, and its name (the device as Home Assistant lists it).
    manufacturer: str | None = None
    model: str | None = None
    #: The keys a device publishes given its config (default: all of `quantities`).
    publishes: Callable[[Any], tuple[str, ...]] | None = None
    #: User-defined keys (`lines` fields, Modbus registers) with their unit and type.
    user_fields: Callable[[Any], tuple[UserField, ...]] | None = None
    #: Smallest step of each quantity given the config (sets the decimals HA shows).
    resolution: Callable[[Any], dict[str, float]] | None = None


#: The `device_class` key of a user-defined field (`lines` fields, Modbus registers).
FieldDeviceClass = Annotated[str | None, Field(
    max_length=40,
    description="Home Assistant device class; absent: derived from the unit where that is "
    "unambiguous (c: temperature, hpa: pressure, v: voltage, hum* in %: humidity, ...); "
    "none: no device class.",
)]


@dataclass(frozen=True)
class UserField:
    """A key the user defined in the config, as discovery needs it."""

    name: str
    unit: str | None
    numeric: bool = True
    #: Configured `device_class`: None derives it from the unit, "none" turns it off.
    device_class: str | None = None
    #: Step of the published value where the config implies one (a register's scale).
    resolution: float | None = None

    @property
    def key(self) -> str:
        return f"{self.name}_{self.unit}" if self.unit else self.name


@cache
def specs() -> dict[str, DeviceSpec]:
    """All device kinds, by `driver:` name."""
    found: dict[str, DeviceSpec] = {}
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, DeviceSpec):
            found[spec.driver] = spec
    return found


def quantities_for(dev: Any) -> tuple[str, ...]:
    """The keys `dev` publishes given its config: what Home Assistant may announce."""
    spec = spec_for(dev.driver)
    if spec.user_fields is not None:
        return tuple(f.key for f in spec.user_fields(dev))
    if spec.publishes is not None:
        return tuple(spec.publishes(dev))
    return spec.quantities


def spec_for(driver: str) -> DeviceSpec:
    try:
        return specs()[driver]
    except KeyError:
        raise KeyError(driver) from None
