"""The check of a device's `sim:` block, plugged in from above.

The config cannot import the simulator (the product must not depend on its test
double), yet a typo under `sim:` should be a config error with its line, not a
crash when the simulator starts. So the layer that owns the simulator in this
process registers its validator here: the commands (`gateway.commands`, before
they load a config) and `hardware_sim.i2c` when it is imported. Without one, a
`sim:` block is kept as written and checked when the simulator builds the chip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: (driver, address, sim block) -> None; raises ValueError for a block the chip model rejects.
SimValidator = Callable[[str, int, dict[str, Any]], None]

_validator: list[SimValidator] = []


def set_sim_validator(validator: SimValidator) -> None:
    """Use `validator` for every `sim:` block validated from now on (replaces any earlier one)."""
    _validator[:] = [validator]


def validate_sim(driver: str, address: int, sim: dict[str, Any]) -> None:
    """Raise ValueError if the registered validator rejects `sim` (no validator: accept)."""
    for validator in _validator:
        validator(driver, address, sim)
