"""A reading: what a device said at one instant, and how it looks on the wire."""

from __future__ import annotations

import calendar
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Final

from gateway.slots import SlotsRecord


class Reading(SlotsRecord):
    __slots__ = ("device", "values", "ts", "mono")

    def __init__(self, device: str, values: dict[str, Any], ts: float | None = None,
                 mono: float | None = None) -> None:
        self.device = device
        self.values = values
        #: Unix time of the measurement (now, if not given).
        self.ts: float = time.time() if ts is None else ts
        #: time.monotonic() of the measurement: what corrects `ts` if the wall clock was
        #: not synchronised yet (gateway.clock).
        self.mono: float = time.monotonic() if mono is None else mono


#: Payload keys that belong to the gateway, never to a device: `seq` (per-device counter,
#: for loss and duplicate detection), `ts` (when it was measured), `clock` (a `ts` taken
#: before the wall clock was synchronised, gateway.clock) and `absent` (which quantities
#: this reading could not carry).
ENVELOPE: Final = ("seq", "ts", "clock", "absent")
#: A device key that collides with the envelope is published under this prefix.
DEVICE_PREFIX: Final = "device_"


class _Absent:
    """The marker a protocol puts where a value should be but is unusable."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self) -> str:
        return "ABSENT"


#: A decoder sets `values[key] = ABSENT` for a field the device sent but that cannot be
#: published (undecodable, NaN); `publishable` turns it into an entry of `absent`.
ABSENT: Final = _Absent()


def device_key(key: str) -> str:
    """The published name of a device's key (`seq` -> `device_seq`; others unchanged)."""
    return DEVICE_PREFIX + key if key in ENVELOPE else key


def publishable(values: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The gateway's rule for every reading, applied once, in `ReaderContext.emit`.

    - A device key equal to an envelope key (`seq`, `ts`, `clock`, `absent`) is renamed
      `device_<key>` (again if that is taken too): the device's value is kept,
      the gateway's envelope is never overwritten or duplicated.
    - A value that is `ABSENT` or a float that is not finite (JSON has no NaN or
      Infinity) is left out, and its key is listed, sorted, under `absent`.
    Returns the values to publish and how many keys were renamed.
    """
    out: dict[str, Any] = {}
    absent: list[str] = []
    renamed = 0
    for key, value in values.items():
        if key in ENVELOPE:
            renamed += 1
            while key in ENVELOPE or key in values or key in out:
                key = DEVICE_PREFIX + key
        if value is ABSENT or (type(value) is float and not math.isfinite(value)):
            absent.append(key)
        else:
            out[key] = value
    if absent:
        out["absent"] = sorted(absent)
    return out, renamed


_second_cache: tuple[int, str] = (-1, "")


def format_ts(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and `Z`: 2026-11-25T10:00:00.123Z."""
    global _second_cache
    ms = round(ts * 1000.0)
    secs, millis = divmod(ms, 1000)
    cached_secs, prefix = _second_cache
    if secs != cached_secs:  # strftime once per second, not once per reading
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        _second_cache = (secs, prefix)
    return f"{prefix}.{millis:03d}Z"


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_PLAIN_KEY = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def encode_payload(seq: int, ts: float, values: dict[str, Any],
                   clock: str | None = None) -> bytes:
    """The flat JSON object published for a reading: seq, ts, then the quantities.

    `clock` (gateway.clock): the envelope key `clock`, right after `ts`, for a
    reading whose `ts` was taken before the wall clock was synchronised.
    """
    parts = [f'{{"seq":{seq},"ts":"{format_ts(ts)}"']
    if clock is not None:
        parts.append(f'"clock":"{clock}"')
    for key, value in values.items():
        # Fast path for the common case: plain keys and finite numbers, whose repr is
        # their JSON text. Anything else goes through the json module.
        if type(value) not in (float, int) or not _PLAIN_KEY.issuperset(key) or (
            type(value) is float and not math.isfinite(value)
        ):
            body: dict[str, Any] = {"seq": seq, "ts": format_ts(ts)}
            if clock is not None:
                body["clock"] = clock
            for k, v in values.items():
                # JSON has no NaN/Infinity: a reading that is not a number is null.
                body[k] = None if isinstance(v, float) and not math.isfinite(v) else v
            return _encode(body).encode("utf-8")
        parts.append(f'"{key}":{value!r}')
    return (",".join(parts) + "}").encode("utf-8")


def parse_ts(text: Any) -> float | None:
    """`2026-11-25T10:00:00.123Z` -> Unix time (None when absent or malformed)."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    main, _, frac = text[:-1].partition(".")
    try:
        secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        return secs + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return None
