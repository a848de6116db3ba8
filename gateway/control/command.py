"""What a command payload on `{prefix}/{output}/set` means, and whether to refuse it.

Payloads (docs/control.md):
- `ON` / `OFF` (also on/off, 1/0, true/false) for on/off outputs;
- a number for numeric outputs (a register, a `format` serial command);
- JSON `{"value": <either of the above>, "ts": "2026-11-30T06:00:00Z", "id": "abc"}`:
  `ts` (ISO 8601, UTC unless it says otherwise) lets the gateway refuse a command that
  is older than the output's `max_age`; `id` comes back in the result.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_TRUE = {"on", "1", "true"}
_FALSE = {"off", "0", "false"}
#: A command longer than this is not a command.
MAX_PAYLOAD = 1024


class Refused(Exception):
    """The command is not executed; the message is the reason sent back on `result`."""


class CommandError(Refused):
    """Refused, with the command's id (so the result can carry it)."""

    def __init__(self, ident: Any, reason: str) -> None:
        super().__init__(reason)
        self.id = None if ident is None else str(ident)


@dataclass(frozen=True)
class Command:
    value: bool | float
    ts: float | None = None  # the sender's time.time(), if it said
    id: str | None = None


def parse(payload: bytes, binary: bool) -> Command:
    """The command in a payload; Refused with the reason when it makes no sense."""
    if len(payload) > MAX_PAYLOAD:
        raise Refused(f"payload too long ({len(payload)} bytes)")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Refused("payload is not UTF-8 text") from None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise Refused(f"payload is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise Refused("JSON payload must be an object")
        unknown = sorted(set(obj) - {"value", "ts", "id"})
        if unknown:
            raise Refused(f"unknown JSON key(s): {', '.join(unknown)} (allowed: value, ts, id)")
        ident = obj.get("id")
        if ident is not None and not isinstance(ident, str | int):
            raise Refused("id must be a string or a number")
        if "value" not in obj:
            raise CommandError(ident, "JSON payload needs \"value\"")
        ts = obj.get("ts")
        when = parse_ts(ts, ident) if ts is not None else None
        try:
            value = _value(obj["value"], binary)
        except Refused as exc:
            raise CommandError(ident, str(exc)) from None
        return Command(value, when, None if ident is None else str(ident))
    return Command(_value(text, binary))


def parse_ts(ts: Any, ident: Any = None) -> float:
    if not isinstance(ts, str):
        raise CommandError(ident, "ts must be an ISO 8601 string, e.g. \"2026-11-30T06:00:00Z\"")
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CommandError(ident, f"ts is not an ISO 8601 time: {ts!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _value(v: Any, binary: bool) -> bool | float:
    if binary:
        if isinstance(v, bool):
            return v
        if isinstance(v, int | float) and v in (0, 1):
            return bool(v)
        if isinstance(v, str):
            word = v.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        raise Refused(f"expected ON or OFF (or on/off, 1/0, true/false), got {_show(v)}")
    if isinstance(v, bool):
        raise Refused(f"expected a number, got {_show(v)}")
    if isinstance(v, str):
        try:
            number = float(v.strip())
        except ValueError:
            raise Refused(f"expected a number, got {_show(v)}") from None
    elif isinstance(v, int | float):
        number = float(v)
    else:
        raise Refused(f"expected a number, got {_show(v)}")
    if not math.isfinite(number):
        raise Refused(f"expected a finite number, got {_show(v)}")
    return number


def _show(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_age(cmd: Command, max_age: float | None, now: float) -> None:
    """Refused when the command's `ts` is older than `max_age` (or that far in the future)."""
    if cmd.ts is None or max_age is None:
        return
    age = now - cmd.ts
    if age > max_age:
        raise CommandError(cmd.id, f"stale: sent {age:.1f} s ago, max_age is {max_age:g} s")
    if -age > max_age:
        raise CommandError(cmd.id, f"ts is {-age:.1f} s in the future (clocks out of sync?)")


def check_range(cmd: Command, lo: float | None, hi: float | None) -> None:
    v = cmd.value
    if isinstance(v, bool):
        return
    if lo is not None and v < lo:
        raise CommandError(cmd.id, f"{v:g} is below min {lo:g}")
    if hi is not None and v > hi:
        raise CommandError(cmd.id, f"{v:g} is above max {hi:g}")
