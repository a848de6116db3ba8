"""All device kinds, discovered: every driver and protocol module with a `SPEC`.

`spec_for(driver)` imports only the module named like the driver when there is
one (a config of ten TMP102s loads one driver, not all of them: memory on a Pi);
`specs()` imports them all (check's list of drivers, scan, the docs).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.catalog.spec import DeviceSpec

if TYPE_CHECKING:
    from gateway.config.model import DeviceBase  # annotations only (see catalog.spec)

_GATEWAY = Path(__file__).resolve().parent.parent


#: Where the entries live: next to the driver or protocol each describes.
ENTRY_PACKAGES = ("gateway.drivers", "gateway.protocols")


@cache
def specs() -> dict[str, DeviceSpec]:
    """All device kinds, by `driver:` name: every `SPEC` in `ENTRY_PACKAGES`."""
    found: dict[str, DeviceSpec] = {}
    for package in ENTRY_PACKAGES:
        where = [str(_GATEWAY / package.rpartition(".")[2])]
        for mod in sorted(pkgutil.iter_modules(where), key=lambda m: m.name):
            if mod.name.startswith("_"):
                continue
            # Discovery, not a dependency: these modules sit in a lower layer.
            module = importlib.import_module(f"{package}.{mod.name}")
            spec = getattr(module, "SPEC", None)
            if isinstance(spec, DeviceSpec):
                if spec.driver in found:
                    raise RuntimeError(f"two catalog entries for driver {spec.driver!r}")
                found[spec.driver] = spec
    return found


def quantities_for(dev: DeviceBase) -> tuple[str, ...]:
    """The keys `dev` publishes given its config: what Home Assistant may announce."""
    spec = spec_for(dev.driver)
    if spec.user_fields is not None:
        return tuple(f.key for f in spec.user_fields(dev))
    if spec.publishes is not None:
        return tuple(spec.publishes(dev))
    return spec.quantities


#: Entries in a module not named like their driver, so that `spec_for` imports that
#: module alone (tests/test_catalog.py checks the list is complete).
OTHER_MODULE = {
    "ds18b20": "gateway.drivers.w1_therm",
    "modbus_rtu": "gateway.protocols.modbus",
}


@cache
def spec_for(driver: str) -> DeviceSpec:
    """The entry of `driver`; KeyError if there is none."""
    # A driver name that is not an identifier cannot name a module: only the fallback.
    names = [f"{package}.{driver}" for package in ENTRY_PACKAGES] if driver.isidentifier() else []
    if driver in OTHER_MODULE:
        names.insert(0, OTHER_MODULE[driver])
    for name in names:
        if importlib.util.find_spec(name) is not None:
            spec = getattr(importlib.import_module(name), "SPEC", None)
            if isinstance(spec, DeviceSpec) and spec.driver == driver:
                return spec
    try:
        return specs()[driver]  # an entry missing from OTHER_MODULE: found all the same
    except KeyError:
        raise KeyError(driver) from None
