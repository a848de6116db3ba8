"""The catalog of device kinds: one entry per `driver:` value.

An entry is a config model (its keys and defaults) and a `SPEC: DeviceSpec`
(`spec.py`) tying it to the pure driver or protocol that does the work. The
entries live next to what they describe, at the end of that module:
`gateway/drivers/<chip>.py` for an I2C chip, `gateway/protocols/<name>.py` for
a serial protocol. `registry.py` discovers them (`specs()`, `spec_for()`).

Why the entry moved to the driver and not the driver to the catalog: the driver
module path is public (`gateway.drivers.<chip>.<Class>`, DESIGN.md's Driver
API), the simulator's chip model imports the driver's datasheet formulas, and
the driver class stays pure all the same: it takes a bus and plain arguments,
no config object; only the entry's `_make` reads the config. So a chip is two
files, the chip (driver + entry) and its simulator model
(`hardware_sim/chips/<chip>.py`), plus its test (`tests/test_driver_<chip>.py`);
tests/test_catalog.py checks that every catalogued chip has all three.
"""

from gateway.catalog.registry import quantities_for, spec_for, specs
from gateway.catalog.spec import (
    ChipProbe,
    Decode,
    DeviceSpec,
    I2CDriver,
    KernelPoll,
    LineStream,
    SysfsEnv,
    UserField,
)

__all__ = ["ChipProbe", "Decode", "DeviceSpec", "I2CDriver", "KernelPoll", "LineStream", "SysfsEnv",
           "UserField",
           "quantities_for", "spec_for", "specs"]
