"""All device kinds, discovered: every module of this package with a `SPEC`."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.catalog.spec import DeviceSpec

if TYPE_CHECKING:
    from gateway.config.model import DeviceBase  # annotations only (see catalog.spec)

_PACKAGE = __name__.rpartition(".")[0]


@cache
def specs() -> dict[str, DeviceSpec]:
    """All device kinds, by `driver:` name."""
    found: dict[str, DeviceSpec] = {}
    here = [str(Path(__file__).parent)]
    for mod in sorted(pkgutil.iter_modules(here), key=lambda m: m.name):
        if mod.name.startswith("_") or mod.name in ("spec", "registry"):
            continue
        module = importlib.import_module(f"{_PACKAGE}.{mod.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, DeviceSpec):
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


def spec_for(driver: str) -> DeviceSpec:
    try:
        return specs()[driver]
    except KeyError:
        raise KeyError(driver) from None
