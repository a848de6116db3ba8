"""Value types shared by config sections: durations, sizes, names, addresses."""

from __future__ import annotations

import re
from typing import Annotated, Any

from gateway.config.schema import AfterValidator, BeforeValidator, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, None: 1,
}


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or a string such as "250ms", "5s", "1m", "2h"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5, 0.5, \"250ms\", \"5s\" or \"1m\"")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            unit = m.group(2)
            return float(m.group(1)) * _DURATION_UNITS[unit]
    raise ValueError(
        f"not a duration: {value!r} (use seconds as a number, or \"250ms\", \"5s\", \"1m\", \"2h\")"
    )


def parse_size(value: Any) -> Any:
    """Bytes as an integer, or a string such as "512MB", "1GiB"."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 1000000, \"256MB\" or \"1GiB\"")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = m.group(2).lower() if m.group(2) else None
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"not a size: {value!r} (use bytes, or \"256MB\", \"1GiB\")")


def parse_int_literal(value: Any) -> Any:
    """Accept 0x76 written as a string ("0x76") as well as YAML's own 0x76 integer."""
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            raise ValueError(f"not an integer: {value!r} (write 0x76 or 118)") from None
    return value


_NAME = re.compile(r"[a-z0-9_-]{1,64}")


def check_name(value: str) -> str:
    """Names go into MQTT topics and client ids: no wildcards, separators or spaces."""
    if not _NAME.fullmatch(value):
        raise ValueError(
            "use 1 to 64 lowercase letters, digits, '_' or '-' (the name is part of MQTT topics)"
        )
    return value


def check_i2c_address(value: int) -> int:
    if not 0x03 <= value <= 0x77:
        raise ValueError(f"0x{value:02x} is not a usable 7-bit I2C address (0x03 to 0x77)")
    return value


#: A positive duration in seconds, at least one millisecond.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0.001)]
#: A duration that may be zero (e.g. "no delay").
DurationOrZero = Annotated[float, BeforeValidator(parse_duration), Field(ge=0.0)]
#: A size in bytes.
Size = Annotated[int, BeforeValidator(parse_size), Field(ge=1)]
#: Names used in MQTT topics and client ids: no wildcards, no separators.
Name = Annotated[str, AfterValidator(check_name)]
#: A 7-bit I2C address outside the reserved ranges (I2C-bus spec UM10204 §3.1.12).
I2CAddress = Annotated[int, BeforeValidator(parse_int_literal), AfterValidator(check_i2c_address)]


def parse_listen(value: str) -> tuple[str, int]:
    """`8080`, `:8080`, `host:8080` or `[::1]:8080` -> (host, port); no host means 127.0.0.1."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected [host:]port such as 127.0.0.1:8080 or 8080, got {value!r}")
    return host, int(port)


#: The `device_class` key of a user-defined field (`lines` fields, Modbus registers).
FieldDeviceClass = Annotated[str | None, Field(
    max_length=40,
    description="Home Assistant device class; absent: derived from the unit where that is "
    "unambiguous (c: temperature, hpa: pressure, v: voltage, hum* in %: humidity, ...); "
    "none: no device class.",
)]
