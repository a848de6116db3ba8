"""The catalog of device kinds: one module per `driver:` value.

Each entry module defines `SPEC: DeviceSpec`, tying a config model (its keys and
defaults) to the pure driver or protocol that does the work; `spec` holds the
types, `registry` discovers the entries. Adding a chip means adding one file
here, one in `gateway/drivers/` and one in `hardware_sim/chips/`.
"""

from gateway.catalog.registry import quantities_for, spec_for, specs
from gateway.catalog.spec import ChipProbe, Decode, DeviceSpec, I2CDriver, LineStream, UserField

__all__ = ["ChipProbe", "Decode", "DeviceSpec", "I2CDriver", "LineStream", "UserField",
           "quantities_for", "spec_for", "specs"]
