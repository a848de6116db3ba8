"""Load a YAML config file into a validated `Config`, or a list of precise problems.

Every problem is reported as `FILE:LINE: dotted.path: what is wrong`, all at
once, never as a traceback.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.catalog.registry import quantities_for, spec_for, specs
from gateway.catalog.spec import DeviceSpec
from gateway.config.model import (
    PASSWORD_HOME,
    Config,
    DeviceBase,
    I2CDevice,
    RootSection,
    SerialDevice,
)
from gateway.config.outputs import output_problems
from gateway.config.problems import ConfigError, Problem
from gateway.config.yamlsource import SourceMap, YamlProblem, decode, dotted, load_with_lines


def load_config(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(name, 0, "(file)", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(name, 0, "(file)", "is a directory, not a config file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(name, 0, "(file)", f"cannot read: {exc.strerror}")]) from None
    return parse_config(decode_config(raw, name), name)


def decode_config(raw: bytes, name: str) -> str:
    """The file's text. Raises ConfigError."""
    try:
        return decode(raw)
    except YamlProblem as exc:
        raise ConfigError([Problem(name, p.line, p.path, p.message) for p in exc.all()]) from None


def parse_config(text: str, name: str = "<config>") -> Config:
    """Validate YAML text. Raises ConfigError."""
    try:
        data, smap = load_with_lines(text)
    except YamlProblem as exc:
        raise ConfigError([Problem(name, p.line, p.path, p.message) for p in exc.all()]) from None
    if data is None:
        raise ConfigError([Problem(name, 1, "(top)", "the file is empty; expected a YAML mapping")])
    if not isinstance(data, dict):
        raise ConfigError(
            [
                Problem(
                    name,
                    smap.line_of(()),
                    "(top)",
                    f"expected a YAML mapping of sections (gateway:, mqtt:, ...), got {_kind(data)}",
                )
            ]
        )
    problems: list[Problem] = []
    root: RootSection | None = None
    try:
        root = RootSection.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc, (), data, smap, name, RootSection)

    devices: list[DeviceBase] = []
    raw_devices = data.get("devices")
    if isinstance(raw_devices, list):
        for i, raw in enumerate(raw_devices):
            device = _validate_device(raw, i, smap, name, problems)
            if device is not None:
                devices.append(device)
        problems += _cross_checks(devices, raw_devices, data, smap, name)
    if root is not None and root.outputs:
        problems += _output_checks(root, devices, data, smap, name)

    if problems or root is None:
        raise ConfigError(problems)
    return Config(
        gateway=root.gateway,
        mqtt=root.mqtt,
        buffer=root.buffer,
        devices=tuple(devices),
        inference=root.inference,
        homeassistant=root.homeassistant,
        metrics=root.metrics,
        http=root.http,
        outputs=tuple(root.outputs),
        source=name,
    )


def _output_checks(root: RootSection, devices: list[DeviceBase], data: dict[str, Any],
                   smap: SourceMap, name: str) -> list[Problem]:
    # Devices that failed validation still own their name: take names from the raw list.
    drivers = {str(d.get("name")): str(d.get("driver")) for d in data.get("devices") or []
               if isinstance(d, dict)}
    drivers.update({d.name: d.driver for d in devices})
    extra = {"status": "reserved for the gateway's own status topic",
             "health": "reserved for the gateway's own health topic"}
    if root.inference.enabled:
        extra[root.inference.name] = "the inference results' name (inference.name)"
    return [Problem(name, smap.line_of(path), ".".join(str(p) for p in path), msg)
            for path, msg in output_problems(list(root.outputs), drivers, extra)]


def _validate_device(
    raw: Any, i: int, smap: SourceMap, name: str, problems: list[Problem]
) -> DeviceBase | None:
    base = ("devices", i)
    where = ".".join(str(p) for p in base)
    if not isinstance(raw, dict):
        problems.append(
            Problem(name, smap.line_of(base), where, f"expected a mapping, got {_kind(raw)}")
        )
        return None
    driver = raw.get("driver")
    known = _known_drivers(driver)
    if driver is None:
        problems.append(
            Problem(
                name,
                smap.line_of(base),
                f"{where}.driver",
                f"required key is missing (one of: {', '.join(sorted(known))})",
            )
        )
        return None
    if not isinstance(driver, str) or driver not in known:
        hint = difflib.get_close_matches(str(driver), known, n=1)
        also = f"; did you mean {hint[0]!r}?" if hint else ""
        problems.append(
            Problem(
                name,
                smap.line_of((*base, "driver")),
                f"{where}.driver",
                f"unknown driver {driver!r} (one of: {', '.join(sorted(known))}){also}",
            )
        )
        return None
    model = known[driver].config
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems += _problems(exc, base, raw, smap, name, model)
        return None


def _known_drivers(driver: object) -> dict[str, DeviceSpec]:
    """The entry of `driver` alone when it exists (no need to load every driver), else all
    of them (for the list in the error message)."""
    if isinstance(driver, str):
        try:
            return {driver: spec_for(driver)}
        except KeyError:
            pass
    return specs()


def _cross_checks(
    devices: list[DeviceBase], raw_devices: list[Any], data: dict[str, Any], smap: SourceMap,
    name: str,
) -> list[Problem]:
    problems: list[Problem] = []
    # Positions in the raw list, for line numbers (devices that failed are absent).
    raw_pos: dict[str, int] = {}
    for i, raw in enumerate(raw_devices):
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            dev_name = raw["name"]
            if dev_name in raw_pos:
                problems.append(
                    Problem(
                        name,
                        smap.line_of(("devices", i, "name")),
                        f"devices.{i}.name",
                        f"duplicate device name {dev_name!r} "
                        f"(also on line {smap.line_of(('devices', raw_pos[dev_name], 'name'))})",
                    )
                )
            else:
                raw_pos[dev_name] = i
    seen_addr: dict[tuple[int, int], str] = {}
    seen_port: dict[str, str] = {}
    for d in devices:
        i = raw_pos.get(d.name, 0)
        if isinstance(d, I2CDevice):
            key = (d.bus, d.address)
            if key in seen_addr:
                problems.append(
                    Problem(
                        name,
                        smap.line_of(("devices", i, "address")),
                        f"devices.{i}.address",
                        f"bus {d.bus} address 0x{d.address:02x} is already used by "
                        f"device {seen_addr[key]!r}",
                    )
                )
            else:
                seen_addr[key] = d.name
        if isinstance(d, SerialDevice) and not getattr(d, "shares_port", False):
            if d.port in seen_port:
                problems.append(
                    Problem(
                        name,
                        smap.line_of(("devices", i, "port")),
                        f"devices.{i}.port",
                        f"port {d.port} is already used by device {seen_port[d.port]!r}",
                    )
                )
            else:
                seen_port[d.port] = d.name
    for d in devices:
        ha = d.homeassistant
        if ha is None or not ha.precision:
            continue
        i = raw_pos.get(d.name, 0)
        published = quantities_for(d)
        for ha_key in ha.precision:
            if ha_key not in published:
                problems.append(
                    Problem(
                        name,
                        smap.line_of(("devices", i, "homeassistant", "precision", ha_key)),
                        f"devices.{i}.homeassistant.precision.{ha_key}",
                        f"device {d.name!r} does not publish {ha_key!r} "
                        f"(it publishes: {', '.join(published) or 'no known keys'})",
                    )
                )
    inference = data.get("inference")
    if isinstance(inference, dict) and inference.get("enabled"):
        inf_name = inference.get("name", "camera")
        if inf_name in raw_pos:
            problems.append(
                Problem(
                    name,
                    smap.line_of(("inference", "name")),
                    "inference.name",
                    f"{inf_name!r} is also a device name; topics would collide",
                )
            )
    for reserved in ("status", "health"):
        if reserved in raw_pos:
            i = raw_pos[reserved]
            problems.append(
                Problem(
                    name,
                    smap.line_of(("devices", i, "name")),
                    f"devices.{i}.name",
                    f"{reserved!r} is reserved for the gateway's own {reserved} topic",
                )
            )
    return problems


def _problems(
    exc: ValidationError,
    base: tuple[str | int, ...],
    data: Any,
    smap: SourceMap,
    name: str,
    model: type[BaseModel],
) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
        # pydantic names the branch of a union ("str", "function-after[...]"); drop those.
        loc = _data_path(loc, data)
        full = (*base, *loc)
        out.append(Problem(name, smap.line_of(full), dotted(full), _message(err, loc, data, model)))
    # One error per path is enough (a union reports one per branch).
    unique: dict[tuple[int, str], Problem] = {}
    for p in out:
        unique.setdefault((p.line, p.path), p)
    return list(unique.values())


def _data_path(loc: tuple[str | int, ...], data: Any) -> tuple[str | int, ...]:
    """Keep only the parts of `loc` that walk the data (or name a missing key)."""
    kept: list[str | int] = []
    node = data
    for part in loc:
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if (isinstance(node, dict) and part in node) or in_list:
            kept.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and (
            node.get("kind") == part or node.get("driver") == part
        ):
            continue  # a tagged union's tag (outputs: kind), not a key of the data
        elif isinstance(node, dict) and isinstance(part, str) and not part.startswith(
            ("function-", "literal[", "nullable[", "union[", "tagged-union[", "lax-", "json-or-")
        ) and part not in {"str", "int", "float", "bool", "list", "dict"}:
            kept.append(part)  # a missing key
            break
    return tuple(kept)


def _message(err: Any, loc: tuple[str | int, ...], data: Any, model: type[BaseModel]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        if loc[-2:] == ("mqtt", "password"):
            return f"the password does not go into the config; use {PASSWORD_HOME}"
        allowed = _allowed_keys(model, loc[:-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        if hint:
            return f"unknown key; did you mean {hint[0]!r}?"
        return f"unknown key (allowed here: {', '.join(sorted(allowed))})" if allowed else (
            "unknown key"
        )
    if kind == "missing":
        return "required key is missing"
    msg: str = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        msg = f"must be one of {expected}"
    got = err.get("input")
    if loc[-1:] == ("password_env",):
        return msg  # the value may be the password itself: never echo it
    if kind not in {"missing"} and not isinstance(got, dict | list) and repr(got) not in msg:
        msg = f"{msg} (got {got!r})"
    return msg[0].lower() + msg[1:] if msg else msg


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"
