"""One record per line from a microcontroller: json, csv or key=value.

  json  {"temp": 21.5, "hum": 40}          an object of scalars per line
  csv   21.5,40                             positional; names/types from `fields`
  kv    temp=21.5,hum=40 (or temp:21.5)     pairs split by the delimiter

Published keys carry their unit (`temperature_c`): a field `{name: temperature,
unit: c}` publishes `temperature_c`; a field without a unit publishes its name.
A line that does not parse is counted and skipped, never half-published.

The catalog entry follows the protocol:
`driver: lines` — a microcontroller printing one record per line (json, csv, kv).
The decoder above takes plain arguments; only the entry reads the config.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from gateway.catalog.spec import DeviceSpec, LineStream, UserField
from gateway.config.model import Section, SerialDevice
from gateway.config.types import Duration, FieldDeviceClass
from gateway.quantities import check_device_class

Format = Literal["json", "csv", "kv"]
FieldType = Literal["float", "int", "bool", "str"]


class LineError(ValueError):
    """A line that does not match the configured format."""


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


def convert(raw: Any, ftype: FieldType, scale: float = 1.0) -> Any:
    """Convert one raw value (text or JSON scalar) to the field's type."""
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
    try:
        if ftype == "int":
            value: float | int = int(raw) if isinstance(raw, int) else int(str(raw).strip(), 0)
            return value * scale if scale != 1.0 else value
        f = float(raw)
    except (TypeError, ValueError):
        raise LineError(f"expected {ftype}, got {raw!r}") from None
    if not math.isfinite(f):
        raise LineError(f"not a finite number: {raw!r}")
    return f * scale


def _auto(text: str) -> Any:
    """An untyped kv value: int, else float, else the text."""
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        f = float(t)
    except ValueError:
        return t
    return f if math.isfinite(f) else t


@dataclass
class LineDecoder:
    format: Format
    fields: Sequence[FieldSpec] = ()
    delimiter: str = ","
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format == "csv" and not self.fields:
            raise ValueError("csv needs `fields` (the name of each column)")
        self._by_name = {f.name: f for f in self.fields}

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def feed(self, line: bytes) -> dict[str, Any] | None:
        """Decode one line; None for a blank or bad line (bad ones are counted)."""
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            self._count("bad_lines")
            return None
        if not text:
            return None
        try:
            record = self.decode(text)
        except LineError:
            self._count("bad_lines")
            return None
        if not record:
            self._count("bad_lines")
            return None
        self._count("lines")
        return record

    def decode(self, text: str) -> dict[str, Any]:
        """Decode one non-empty line. Raises LineError."""
        if self.format == "json":
            return self._named(self._json(text))
        if self.format == "kv":
            return self._named(self._kv(text))
        return self._csv(text)

    def _json(self, text: str) -> dict[str, Any]:
        try:
            obj = json.loads(text)
        except ValueError:
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
            if not key:
                raise LineError(f"empty key in {item!r}")
            out[key] = value.strip()
        return out

    def _named(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Apply `fields` (rename by unit, convert type); without fields keep scalars."""
        out: dict[str, Any] = {}
        if not self.fields:
            for k, v in raw.items():
                if isinstance(v, str) and self.format == "kv":
                    out[str(k)] = _auto(v)
                elif isinstance(v, bool | int | str) or (
                    isinstance(v, float) and math.isfinite(v)
                ):
                    out[str(k)] = v
                elif v is None or isinstance(v, dict | list | float):
                    self._count("skipped_values")  # nested or non-finite: not a flat quantity
            return out
        for spec in self.fields:
            if spec.name in raw:
                out[spec.key] = convert(raw[spec.name], spec.type, spec.scale)
        if not out:
            raise LineError("none of the configured fields is present")
        return out

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
    decoder = LineDecoder(cfg.format, field_specs(cfg), cfg.delimiter, counters=counters)

    def decode(line: bytes) -> list[dict[str, Any]]:
        record = decoder.feed(line)
        return [] if record is None else [record]

    return LineStream(decode=decode, interval=cfg.interval, max_line=cfg.max_line,
                      silence_timeout=cfg.silence_timeout)


SPEC = DeviceSpec(
    driver="lines",
    summary="Line protocol from a microcontroller (json, csv, key=value)",
    kind="serial",
    config=LinesConfig,
    quantities=(),  # user-defined
    make_stream=_make_stream,
    user_fields=_user_fields,
)
