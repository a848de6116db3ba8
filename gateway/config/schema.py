"""The names the config models take from pydantic, or their stand-ins (`plain`).

Every model module imports them from here. A process validates with pydantic; the
daemon (`edge-gateway run`) switches to the stand-ins before its first model module
loads, and builds its models from what a validating child process handed back
(`gateway.config.snapshot`): it never loads pydantic (13 MiB; docs/small-pi.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config import mode

#: True in a process that called `use_plain_models()` before loading any model.
PLAIN = mode.plain

if TYPE_CHECKING or not PLAIN:
    from pydantic import (
        AfterValidator,
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Field,
        ValidationInfo,
        field_validator,
        model_validator,
    )
else:
    from gateway.config.plain import (
        AfterValidator,
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Field,
        ValidationInfo,
        field_validator,
        model_validator,
    )

__all__ = [
    "PLAIN", "AfterValidator", "BaseModel", "BeforeValidator", "ConfigDict", "Field",
    "ValidationInfo", "field_validator", "model_validator",
]
