"""One record per line from a microcontroller: json, csv or key=value.

  json  {"temp": 21.5, "hum": 40}          an object of scalars per line
  csv   21.5,40                             positional; names/types from `fields`
  kv    temp=21.5,hum=40 (or temp:21.5)     pairs split by the delimiter

Published keys carry their unit (`temperature_c`): a field `{name: temperature,
unit: c}` publishes `temperature_c`; a field without a unit publishes its name.

What real boards print, and what becomes of it:
- Junk before a line (a UTF-8 BOM, NUL or 0xFF bytes after a reset, half a UTF-8
  character) is stripped; the rest of the line is decoded as usual.
- `nan`, `inf`, `ovf` (Arduino's `Serial.print` of a float it cannot print) are
  "no value": the key is left out and listed under `absent`; the others publish.
- A kv line without `fields` is a reading only when it is made entirely of
  `key=value` pairs with identifier keys and numeric values, so boot text such as
  ESP32's `rst:0x1 (POWERON_RESET),boot:0x13` is not (`text_values: keep` keeps
  one-word text values as strings). `23.5C`: the unit suffix is stripped by default
  (`unit_suffix: key` appends it to the key instead: `temp_c`).
- A line that does not parse is counted and skipped, never half-published.

The catalog entry follows the protocol:
`driver: lines` — a microcontroller printing one record per line (json, csv, kv).
The decoder above takes plain arguments; only the entry reads the config.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.catalog.spec import DeviceSpec, LineStream, UserField
from gateway.config.model import Section, SerialDevice
from gateway.config.schema import Field, model_validator
from gateway.config.types import Duration, FieldDeviceClass
from gateway.protocols.framer import LineFramer
from gateway.quantities import check_device_class
from gateway.reading import ABSENT

Format = Literal["json", "csv", "kv"]
FieldType = Literal["float", "int", "bool", "str"]
UnitSuffix = Literal["strip", "key"]
TextValues = Literal["reject", "keep"]


class LineError(ValueError):
    """A line that does not match the configured format."""


#: A reading is a flat object; anything nested deeper is not one. json.loads recurses per
#: level, so a line of 1,000 '[' would raise RecursionError: such lines are refused first.
MAX_JSON_DEPTH = 16


def json_depth(text: str) -> int:
    """The deepest nesting of [ and { in `text`, outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType = "float"
    unit: str | None = None
    scale: float = 1.0

    @property
    def key(self) -> str:
        return self.name if not self.unit else f"{self.name}_{self.unit}"


_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}
#: How boards print a float that has no value: C's printf, Arduino's Serial.print ("ovf").
_NO_VALUE = {"nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity",
             "ovf", "-ovf"}
_INT = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: A number followed by a unit: `23.5C`, `40 %`, `1013.2hPa`, `21.5°C`, `3.3V`. The unit
#: starts with a letter, %, ° or µ, so hex (`0x1F`) and exponents are not units.
_WITH_UNIT = re.compile(
    r"(?P<num>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)) ?(?P<unit>[A-Za-z%°µ][A-Za-z0-9%°µ/]{0,7})"
)
_KV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNIT_KEY = {"%": "pct", "°c": "c", "°f": "f", "°": "deg"}
_BOM = b"\xef\xbb\xbf"


def strip_junk(line: bytes) -> tuple[bytes, bool]:
    """Remove what a reset or a port open leaves before a line: BOM, NUL, control
    characters, 0xFF and broken UTF-8. Returns the line and whether anything went."""
    i, n = 0, len(line)
    while i < n:
        if line.startswith(_BOM, i):
            i += 3
            continue
        b = line[i]
        if b < 0x20 or b == 0x7F:
            i += 1
            continue
        if b < 0x80:
            break
        width = 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
        if width:
            try:
                line[i:i + width].decode("utf-8")
                break  # a real non-ASCII character begins the line
            except UnicodeDecodeError:
                pass
        i += 1  # a byte that cannot start a character: junk
    return line[i:], i > 0


def parse_int(text: str) -> int:
    """Decimal, zero padding allowed (`007`, `08`); hex only with 0x. Raises ValueError."""
    t = text.strip()
    if _INT.fullmatch(t):
        return int(t, 10)
    if _HEX.fullmatch(t):
        return int(t, 16)
    raise ValueError(f"not an integer: {text!r}")


def _number_and_unit(text: str) -> tuple[str, str | None]:
    """`23.5C` -> ("23.5", "C"); `23.5` -> ("23.5", None); anything else unchanged."""
    m = None if _FLOAT.fullmatch(text) or _HEX.fullmatch(text) else _WITH_UNIT.fullmatch(text)
    if m is None:
        return text, None
    return m.group("num"), m.group("unit")


def convert(raw: Any, ftype: FieldType, scale: float = 1.0) -> Any:
    """Convert one raw value (text or JSON scalar) to the field's type.

    Returns ABSENT for "no value" (nan, inf, ovf, an empty cell, JSON null); raises
    LineError for a value of the wrong kind (`warm` for a float).
    """
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return ABSENT
    if ftype == "str":
        return raw if isinstance(raw, str) else json.dumps(raw)
    if ftype == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise LineError(f"not a boolean: {raw!r}")
    if isinstance(raw, bool):
        raise LineError(f"expected a number, got {raw!r}")
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in _NO_VALUE:
            return ABSENT
        text, _unit = _number_and_unit(text)  # the field's `unit` says what it is
    else:
        text = raw
    try:
        if ftype == "int":
            value: float | int = raw if isinstance(raw, int) else parse_int(str(text))
            return value * scale if scale != 1.0 else value
        f = float(text)
    except (TypeError, ValueError):
        raise LineError(f"expected {ftype}, got {raw!r}") from None
    if not math.isfinite(f):
        return ABSENT
    return f * scale


@dataclass
class LineDecoder:
    format: Format
    fields: Sequence[FieldSpec] = ()
    delimiter: str = ","
    counters: dict[str, int] = field(default_factory=dict)
    #: kv without fields: `23.5C` -> 23.5 under its key (strip) or under `key_c` (key).
    unit_suffix: UnitSuffix = "strip"
    #: kv without fields: a non-numeric value makes the line not a reading (reject),
    #: or is published as a string when it is one word (keep).
    text_values: TextValues = "reject"

    def __post_init__(self) -> None:
        if self.format == "csv" and not self.fields:
            raise ValueError("csv needs `fields` (the name of each column)")
        self._by_name = {f.name: f for f in self.fields}

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def feed(self, line: bytes) -> dict[str, Any] | None:
        """Decode one line; None for a blank or bad line (bad ones are counted)."""
        line, stripped = strip_junk(line)
        if stripped:
            self._count("stripped_junk")
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            self._count("bad_lines")
            return None
        if not text:
            return None
        try:
            record = self.decode(text)
        except (ValueError, RecursionError, TypeError, OverflowError):  # LineError and kin
            self._count("bad_lines")
            return None
        if all(v is ABSENT for v in record.values()):
            self._count("bad_lines")  # nothing to publish (empty, or every value nan)
            return None
        self._count("lines")
        return record

    def first_line_is_whole(self, line: bytes) -> bool:
        """Whether the first line after the port opened can be trusted to be a whole
        line, not the tail of one: it follows reset junk, or it is a JSON object, or
        (kv with fields) every key is a configured field. csv and fieldless kv cannot
        tell a tail (`mp=21.5`) from a line, so their first line is dropped."""
        line, stripped = strip_junk(line)
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            return False
        if stripped:
            return True
        try:
            if self.format == "json":
                return text.startswith("{") and bool(self._json(text))
            if self.format == "kv" and self.fields:
                keys = self._kv(text).keys()
                return bool(keys) and all(k in self._by_name for k in keys)
        except LineError:
            return False
        return False

    def decode(self, text: str) -> dict[str, Any]:
        """Decode one non-empty line. Raises LineError."""
        if self.format == "json":
            return self._named(self._json(text))
        if self.format == "kv":
            return self._named(self._kv(text))
        return self._csv(text)

    def _json(self, text: str) -> dict[str, Any]:
        if json_depth(text) > MAX_JSON_DEPTH:
            raise LineError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise LineError("not JSON") from None
        if not isinstance(obj, dict):
            raise LineError("JSON line is not an object")
        return obj

    def _kv(self, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in text.split(self.delimiter):
            item = item.strip()
            if not item:
                continue
            for sep in ("=", ":"):
                key, found, value = item.partition(sep)
                if found:
                    break
            else:
                raise LineError(f"no '=' in {item!r}")
            key = key.strip()
            if not _KV_KEY.fullmatch(key):
                raise LineError(f"not a key: {key!r}")  # e.g. boot text "clock div:1"
            out[key] = value.strip()
        return out

    def _named(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Apply `fields` (rename by unit, convert type); without fields keep scalars."""
        out: dict[str, Any] = {}
        if not self.fields:
            for k, v in raw.items():
                if isinstance(v, str) and self.format == "kv":
                    key, value = self._auto(str(k), v)
                    out[key] = value
                elif v is None or (isinstance(v, float) and not math.isfinite(v)):
                    out[str(k)] = ABSENT
                elif isinstance(v, bool | int | str | float):
                    out[str(k)] = v
                else:
                    self._count("skipped_values")  # nested: not a flat quantity
            return out
        for spec in self.fields:
            if spec.name in raw:
                out[spec.key] = convert(raw[spec.name], spec.type, spec.scale)
        if not out:
            raise LineError("none of the configured fields is present")
        for spec in self.fields:
            out.setdefault(spec.key, ABSENT)  # configured but not in this line
        return out

    def _auto(self, key: str, text: str) -> tuple[str, Any]:
        """An untyped kv value: int, float, ABSENT for nan/inf; a unit suffix per
        `unit_suffix`; other text per `text_values`. Hex (boot text) is not a number."""
        t = text.strip()
        if t.lower() in _NO_VALUE:
            return key, ABSENT
        if _INT.fullmatch(t):
            return key, int(t, 10)
        if _FLOAT.fullmatch(t):
            return key, float(t)
        number, unit = _number_and_unit(t)
        if unit is not None:
            value: float | int = int(number, 10) if _INT.fullmatch(number) else float(number)
            if self.unit_suffix == "key":
                u = _UNIT_KEY.get(unit.lower(), unit.lower())
                if re.fullmatch(r"[a-z0-9]+", u):
                    return f"{key}_{u}", value
            return key, value
        if self.text_values == "keep" and t and not any(c.isspace() for c in t):
            return key, t
        raise LineError(f"{key}: not a number: {text!r}")

    def _csv(self, text: str) -> dict[str, Any]:
        try:
            row = next(csv.reader([text], delimiter=self.delimiter, skipinitialspace=True))
        except (csv.Error, StopIteration):
            raise LineError("not CSV") from None
        if len(row) != len(self.fields):
            raise LineError(f"{len(row)} columns, expected {len(self.fields)}")
        return {
            spec.key: convert(cell, spec.type, spec.scale)
            for spec, cell in zip(self.fields, row, strict=True)
        }


# -- the catalog entry ------------------------------------------------------------

_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"


class LineField(Section):
    name: str = Field(pattern=_KEY, max_length=64, description="Field name in the line.")
    type: Literal["float", "int", "bool", "str"] = Field(default="float", description="Value type.")
    unit: str | None = Field(
        default=None, pattern=r"^[a-z0-9]+$", max_length=16,
        description="Unit suffix of the published key: {name: temp, unit: c} -> temp_c.",
    )
    scale: float = Field(default=1.0, description="Multiply numbers by this (e.g. 0.1).")
    device_class: FieldDeviceClass = None

    @model_validator(mode="after")
    def _device_class(self) -> LineField:
        if self.device_class not in (None, "none"):
            if self.type in ("bool", "str"):
                raise ValueError(f"a {self.type} field cannot have a device class")
            check_device_class(self.device_class, self.unit)
        return self


class LinesConfig(SerialDevice):
    driver: Literal["lines"]
    format: Literal["json", "csv", "kv"] = Field(description="json | csv | kv (temp=21.5,hum=40).")
    fields: list[LineField] = Field(
        default_factory=list,
        description="csv: one per column, in order (required). json/kv: keep only these, typed.",
    )
    delimiter: str = Field(
        default=",", min_length=1, max_length=1,
        description="csv column / kv pair separator.",
    )
    interval: Duration | None = Field(  # type: ignore[assignment]
        default=None,
        description="Publish the latest record at most this often; absent: every line.",
    )
    max_line: int = Field(default=1024, ge=16, le=65536, description="Longest line kept.")
    silence_timeout: Duration = Field(
        default=30.0, description="No valid line for this long marks the device failing.",
    )
    unit_suffix: Literal["strip", "key"] = Field(
        default="strip",
        description="kv without fields, a value like 23.5C: strip the unit (temp: 23.5) "
                    "or append it to the key (temp_c: 23.5).",
    )
    text_values: Literal["reject", "keep"] = Field(
        default="reject",
        description="kv without fields: a non-numeric value makes the line not a reading "
                    "(boot text), or keep one-word text values as strings.",
    )

    @model_validator(mode="after")
    def _fields(self) -> LinesConfig:
        if self.format == "csv" and not self.fields:
            raise ValueError("format csv needs `fields` (one per column)")
        keys = [f.name if not f.unit else f"{f.name}_{f.unit}" for f in self.fields]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"fields publish the same key twice: {', '.join(dup)}")
        if self.format == "kv" and self.delimiter in "=:":
            raise ValueError("kv pairs cannot be separated by '=' or ':'")
        return self


def field_specs(cfg: LinesConfig) -> list[FieldSpec]:
    return [FieldSpec(f.name, f.type, f.unit, f.scale) for f in cfg.fields]


def _user_fields(cfg: LinesConfig) -> tuple[UserField, ...]:
    # Without `fields`, json/kv publish whatever keys the line carries: unknown here.
    return tuple(
        UserField(f.name, f.unit, f.type in ("float", "int"), f.device_class,
                  abs(f.scale) if f.type == "int" else None)
        for f in cfg.fields)


def _make_stream(cfg: LinesConfig, counters: dict[str, int]) -> LineStream:
    decoder = LineDecoder(cfg.format, field_specs(cfg), cfg.delimiter, counters=counters,
                          unit_suffix=cfg.unit_suffix, text_values=cfg.text_values)

    def decode(line: bytes) -> list[dict[str, Any]]:
        record = decoder.feed(line)
        return [] if record is None else [record]

    framer = LineFramer(b"\n", cfg.max_line, whole_first_line=decoder.first_line_is_whole)
    return LineStream(decode=decode, interval=cfg.interval, max_line=cfg.max_line,
                      silence_timeout=cfg.silence_timeout, framer=framer)


SPEC = DeviceSpec(
    driver="lines",
    summary="Line protocol from a microcontroller (json, csv, key=value)",
    kind="serial",
    config=LinesConfig,
    quantities=(),  # user-defined
    make_stream=_make_stream,
    user_fields=_user_fields,
)
