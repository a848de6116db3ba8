"""Which models this process runs on, set once before the first model module loads.

`edge-gateway run` calls `use_plain_models()` first thing: its models are then the
stand-ins of `gateway.config.plain`, built from what a validating child process
returns (`gateway.config.snapshot`). Every other process validates with pydantic.
"""

from __future__ import annotations

import sys

plain = False


def use_plain_models() -> bool:
    """Run on plain models from now on; False (nothing changes) once models have loaded."""
    global plain
    if "gateway.config.schema" in sys.modules:
        return plain
    plain = True
    return True
