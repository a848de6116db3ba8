"""One place per chip: every catalogued chip has its driver (with its entry), a simulator model and a test.

A chip is two files, `gateway/drivers/<chip>.py` (the pure driver, then its
catalog entry: config model and SPEC) and `hardware_sim/chips/<chip>.py` (the
register-level model), plus `tests/test_driver_<chip>.py`. A serial protocol's
entry sits at the end of its `gateway/protocols/` module.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from gateway.catalog import DeviceSpec, specs
from hardware_sim.i2c import SimChip
from hardware_sim.world import demo_layout
from tests.support import REPO

I2C = sorted(name for name, spec in specs().items() if spec.kind == "i2c")
SERIAL = sorted(name for name, spec in specs().items() if spec.kind == "serial")


def test_the_catalog_knows_the_chips_and_protocols() -> None:
    assert {"bme280", "sht3x", "tmp102", "scd4x"} <= set(I2C)
    assert {"nmea", "lines", "modbus_rtu"} <= set(SERIAL)
    # No entries left in the catalog package: only the types and the discovery.
    assert {p.name for p in (REPO / "gateway" / "catalog").glob("*.py")} == {
        "__init__.py", "spec.py", "registry.py"}


@pytest.mark.parametrize("driver", I2C)
def test_every_chip_has_its_driver_a_simulator_model_and_a_test(driver: str) -> None:
    spec = specs()[driver]
    module = importlib.import_module(f"gateway.drivers.{driver}")
    # The entry lives with the driver ...
    assert getattr(module, "SPEC", None) is spec and spec.config.__module__ == module.__name__
    assert spec.make_driver is not None and spec.probe is not None
    # ... and the driver class stays free of config objects: plain arguments only.
    driver_classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
                      if c.__module__ == module.__name__ and hasattr(c, "read")]
    assert driver_classes, f"{driver}: no driver class with read()"
    for cls in driver_classes:
        params = inspect.signature(cls.__init__).parameters
        assert "cfg" not in params and "config" not in params, f"{cls.__name__} takes a config"
    sim = importlib.import_module(f"hardware_sim.chips.{driver}")
    assert issubclass(sim.MODEL, SimChip)
    assert (REPO / "tests" / f"test_driver_{driver}.py").is_file()


@pytest.mark.parametrize("driver", SERIAL)
def test_every_protocol_entry_sits_with_its_protocol_and_has_a_test(driver: str) -> None:
    spec: DeviceSpec = specs()[driver]
    module = inspect.getmodule(spec.config)
    assert module is not None and module.__name__.startswith("gateway.protocols.")
    assert getattr(module, "SPEC", None) is spec
    name = module.__name__.rpartition(".")[2]
    assert (REPO / "tests" / f"test_{name}.py").is_file()


def test_scan_simulate_layout_is_derived_from_the_catalog() -> None:
    layout = demo_layout()
    assert sorted(layout) == I2C  # every modelled chip, none hand-listed
    assert len(set(layout.values())) == len(layout)  # distinct addresses
    for driver, address in layout.items():
        probe = specs()[driver].probe
        assert probe is not None and address in probe.addresses


def test_no_file_outside_the_two_names_a_chip() -> None:
    """The fourth place is gone: nothing else in gateway/ lists the chips by name."""
    listed = [p for p in (REPO / "gateway").rglob("*.py")
              if sum(f'"{d}"' in p.read_text(encoding="utf-8") for d in I2C) >= 3]
    assert listed == []


def test_spec_for_imports_one_module_never_the_whole_catalog(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A config of ds18b20 probes must not load every protocol module (memory on a Pi,
    tests/test_daemon_imports.py): `spec_for` finds each entry without `specs()`."""
    from gateway.catalog import registry

    every = dict(specs())

    def whole_catalog() -> dict[str, DeviceSpec]:
        raise AssertionError("spec_for fell back to importing the whole catalog")

    monkeypatch.setattr(registry, "specs", whole_catalog)
    registry.spec_for.cache_clear()
    try:
        for driver, spec in every.items():
            assert registry.spec_for(driver) is spec, driver
    finally:
        registry.spec_for.cache_clear()
