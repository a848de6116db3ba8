"""Generate docs/config-reference.md from the config schema (so the docs cannot drift).

    make docs                                               # rewrite docs/config-reference.md
    .venv/bin/python tools/gen_config_reference.py --check  # exit 1 if the file is stale

Sections come from `gateway/config/model.py`; device keys from each driver's
config model in `gateway.catalog.specs()`. tests/test_config_reference.py
fails when the checked-in file differs from what this prints.
"""

from __future__ import annotations

import argparse
import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = REPO / "docs" / "config-reference.md"

from gateway.catalog import specs  # noqa: E402
from gateway.config import model as m  # noqa: E402
from gateway.config import outputs as o  # noqa: E402
from gateway.config import types as t  # noqa: E402
from gateway.quantities import quantity  # noqa: E402

SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("gateway", m.GatewaySection, "The gateway itself. `id` is required."),
    ("mqtt", m.MqttSection, "The broker connection."),
    ("buffer", m.BufferSection, "The spool that holds readings until the broker acknowledges them."),
    ("inference", m.InferenceSection, "Optional on-device image inference (docs/inference.md)."),
    ("homeassistant", m.HomeAssistantSection, "Home Assistant MQTT discovery."),
    ("metrics", m.MetricsSection, "The optional Prometheus endpoint."),
    ("http", m.HttpSection, "The optional status page, JSON API and `/metrics` (docs/status-page.md)."),
]


def _validator_funcs(info: FieldInfo) -> set[Any]:
    funcs = set()
    for meta in info.metadata:
        f = getattr(meta, "func", None)
        if f is not None:
            funcs.add(f)
    return funcs


def _bounds(info: FieldInfo) -> str:
    lo = hi = None
    lo_open = hi_open = False
    for meta in info.metadata:
        for attr, is_lo, is_open in (("ge", True, False), ("gt", True, True), ("le", False, False),
                                     ("lt", False, True)):
            v = getattr(meta, attr, None)
            if v is not None:
                if is_lo:
                    lo, lo_open = v, is_open
                else:
                    hi, hi_open = v, is_open
    if lo is None and hi is None:
        return ""
    if lo is not None and hi is not None and not lo_open and not hi_open:
        return f" {_num(lo)}–{_num(hi)}"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '≥'} {_num(lo)}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '≤'} {_num(hi)}")
    return " " + ", ".join(parts)


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def type_name(ann: Any, info: FieldInfo | None = None) -> str:
    """A short, human type description."""
    funcs = _validator_funcs(info) if info is not None else set()
    if typing.get_origin(ann) is typing.Annotated:  # e.g. inside `Duration | None`
        funcs |= {f for meta in typing.get_args(ann)[1:] if (f := getattr(meta, "func", None))}
    if t.parse_duration in funcs:
        return "duration"
    if t.parse_size in funcs:
        return "size"
    if t.check_name in funcs:
        return "name"
    if t.check_i2c_address in funcs:
        return "I2C address (0x03–0x77)"
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return type_name(args[0], info)
    if origin is typing.Literal:
        return "one of " + " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        text = " or ".join(type_name(a) for a in real)
        return text
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"list of {len(args)} {type_name(args[0])}s"
        inner = args[0] if args else Any
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return "list of mappings"
        return f"list of {type_name(inner)}"
    if origin is dict:
        return "mapping"
    if isinstance(ann, type):
        if issubclass(ann, BaseModel):
            return "mapping"
        if issubclass(ann, enum.Enum):
            return "one of " + " \\| ".join(f"`{e.value}`" for e in ann)
        return {bool: "boolean", int: "integer", float: "number", str: "text",
                Path: "path"}.get(ann, ann.__name__)
    return str(ann)


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(see below)"
        return f"`{value!r}`" if value not in ([], {}, ()) else "empty"
    d = info.default
    if d is None or d is PydanticUndefined:
        return "—"
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    if isinstance(d, Path):
        return f"`{d}`"
    if isinstance(d, float) and _validator_funcs(info) & {t.parse_duration}:
        return f"`{_duration(d)}`"
    if isinstance(d, int) and t.parse_size in _validator_funcs(info):
        return f"`{_size(d)}`"
    if isinstance(d, int) and t.check_i2c_address in _validator_funcs(info):
        return f"`0x{d:02x}`"
    return f"`{d}`"


def _duration(s: float) -> str:
    if s == 0:
        return "0"
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if s >= size and (s / size).is_integer():
            return f"{int(s / size)}{unit}"
    ms = s * 1000
    return f"{ms:g}ms"


def _size(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _nested_models(ann: Any) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    out: list[type[BaseModel]] = []
    for a in typing.get_args(ann):
        out += _nested_models(a)
    return out


def rows(model: type[BaseModel], prefix: str, skip: set[str] | None = None) -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        if skip and name in skip:
            continue
        key = f"{prefix}{name}"
        desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
        typ = type_name(info.annotation, info) + _bounds(info)
        out.append(f"| `{key}` | {typ} | {default_text(info)} | {desc} |")
        for sub in _nested_models(info.annotation):
            is_list = typing.get_origin(info.annotation) is list or any(
                typing.get_origin(a) is list for a in typing.get_args(info.annotation))
            out += rows(sub, f"{key}[]." if is_list else f"{key}.")
    return out


HEAD = ["| Key | Type | Default | Description |", "|---|---|---|---|"]


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by tools/gen_config_reference.py from the config schema. Do not edit by",
        "     hand: run `make docs` (a test fails when it is stale). -->",
        "",
        "A config file is YAML with the sections below. Unknown keys are errors. Validate a file",
        "with `edge-gateway check -c FILE`.",
        "",
        "Value types:",
        "",
        "- **duration**: seconds as a number (`0.5`), or text with a unit: `250ms`, `5s`, `1m`, "
        "`2h`, `1d`; at least 1 ms unless stated.",
        "- **size**: bytes as a number, or text such as `256MB`, `1GiB`.",
        "- **name**: 1 to 64 of `a-z`, `0-9`, `_`, `-` (names appear in MQTT topics).",
        "- **I2C address**: a 7-bit address, `0x76` or `118`.",
        "",
        "## Sections",
        "",
    ]
    for name, model, text in SECTIONS:
        lines += [f"### `{name}`", "", text, "", *HEAD, *rows(model, f"{name}."), ""]
    lines += [
        "## Devices",
        "",
        "`devices:` is a list; each entry has the keys common to all devices plus the keys of its "
        "`driver`.",
        "",
        "### Keys of every device",
        "",
        *HEAD, *rows(m.DeviceBase, ""), "",
        "### Keys of every I2C device",
        "",
        *HEAD, *rows(m.I2CDevice, "", skip=set(m.DeviceBase.model_fields)), "",
        "### Keys of every serial device",
        "",
        *HEAD, *rows(m.SerialDevice, "", skip=set(m.DeviceBase.model_fields)), "",
        "## Drivers",
        "",
        "| Driver | Kind | What | Quantities |",
        "|---|---|---|---|",
    ]
    all_specs = sorted(specs().items())
    for name, spec in all_specs:
        qs = ", ".join(f"`{q}`" for q in spec.quantities) or "user-defined"
        lines.append(f"| [`{name}`](#driver-{name}) | {spec.kind} | {spec.summary} | {qs} |")
    lines.append("")
    for name, spec in all_specs:
        bases: dict[str, type[BaseModel]] = {"i2c": m.I2CDevice, "serial": m.SerialDevice}
        base = bases.get(spec.kind, m.DeviceBase)
        own = [r for r in rows(spec.config, "", skip={"driver"})
               if not _inherited(r, base, spec.config)]
        lines += [f"<a id=\"driver-{name}\"></a>", f"### `driver: {name}`", "", spec.summary + "."]
        if spec.reference:
            lines += ["", f"Reference: {spec.reference}."]
        if spec.quantities:
            lines += ["", "Publishes: " + ", ".join(
                f"`{q}` ({quantity(q).unit or 'no unit'})" for q in spec.quantities) + "."]
        if spec.probe is not None:
            lines += ["", "Addresses: " + ", ".join(f"`0x{a:02x}`" for a in spec.probe.addresses)
                      + "."]
        lines += [""]
        if own:
            lines += ["Keys (in addition to the common device keys above):", "", *HEAD, *own, ""]
        else:
            lines += ["No keys beyond the common device keys.", ""]
    lines += [
        "<a id=\"outputs\"></a>",
        "## Outputs",
        "",
        "`outputs:` is a list of things MQTT commands may switch (docs/control.md); each entry "
        "has the keys common to all outputs plus the keys of its `kind`.",
        "",
        "### Keys of every output",
        "",
        *HEAD, *rows(o.OutputBase, ""), "",
    ]
    for model in (o.GpioOutput, o.ModbusCoilOutput, o.ModbusRegisterOutput, o.SerialLineOutput):
        kind = typing.get_args(model.model_fields["kind"].annotation)[0]
        own = [r for r in rows(model, "", skip={"kind"}) if not _inherited(r, o.OutputBase, model)]
        lines += [f"### `kind: {kind}`", "", (model.__doc__ or "").strip(), "", *HEAD, *own, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _inherited(row: str, base: type[BaseModel], model: type[BaseModel]) -> bool:
    """A row for a key the driver inherits unchanged from its base class."""
    key = row.split("`", 2)[1].split(".")[0].split("[")[0]
    if key not in base.model_fields or key not in model.model_fields:
        return False
    a, b = base.model_fields[key], model.model_fields[key]
    return bool(a.annotation == b.annotation and a.default == b.default
                and a.description == b.description and a.metadata == b.metadata)


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate docs/config-reference.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{_shown(OUT)} is stale: run make docs",
                  file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {_shown(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
