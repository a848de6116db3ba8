"""`driver: lines` — a microcontroller printing one record per line (json, csv, kv)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from gateway.catalog.spec import DeviceSpec, LineStream, UserField
from gateway.config.model import Section, SerialDevice
from gateway.config.types import Duration, FieldDeviceClass
from gateway.protocols.lines import FieldSpec, LineDecoder
from gateway.quantities import check_device_class

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
