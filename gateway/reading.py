"""A reading: what a device said at one instant, and how it looks on the wire."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Reading:
    device: str
    values: dict[str, Any]
    ts: float = field(default_factory=time.time)  # Unix time of the measurement


def format_ts(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and `Z`: 2026-11-25T10:00:00.123Z."""
    ms = round(ts * 1000.0)
    secs, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode_payload(seq: int, ts: float, values: dict[str, Any]) -> bytes:
    """The flat JSON object published for a reading: seq, ts, then the quantities."""
    body = {"seq": seq, "ts": format_ts(ts)}
    body.update(values)
    return _encode(body).encode("utf-8")
