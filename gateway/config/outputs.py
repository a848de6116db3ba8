"""The `outputs:` section: things the gateway may switch or set (relays, coils, setpoints).

Each output has a name (its topics are `{topic_prefix}/{name}/set|state|result`, so
it must not clash with a device name) and a `kind`:

- `gpio`: a relay on a GPIO line (libgpiod v2, the `gpio` extra).
- `modbus_coil` / `modbus_register`: a coil or holding register of a configured
  `modbus_rtu` device (its port and slave), written between that line's polls.
- `serial_line`: a line written to a configured `lines` device's port (a
  microcontroller command), optionally confirmed by a reply matching `expect`.

Safety keys are shared: `commands` (opt-in), `max_age`, `on_broker_loss` with
`broker_loss_after`, `initial` / `on_stop`, and for on/off outputs `max_on`; numeric
outputs have `min` / `max`. docs/control.md explains each.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from gateway.config.schema import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from gateway.config.types import Duration, Name


def _on_off(v: Any) -> Any:
    """YAML 1.1 reads a bare on/off as true/false: take them back as words."""
    if isinstance(v, bool):
        return "on" if v else "off"
    return v


OnOff = Annotated[Literal["on", "off"], BeforeValidator(_on_off)]
OnOffNumber = Annotated[str | float, BeforeValidator(_on_off)]
_TYPE_REGISTERS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
_TYPE_RANGE = {"int16": (-32768, 32767), "uint16": (0, 65535), "int32": (-(2**31), 2**31 - 1),
               "uint32": (0, 2**32 - 1)}


class Section(BaseModel):
    """Like `gateway.config.model.Section` (which imports this module): strict and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class OutputBase(Section):
    """Keys every output has."""

    name: Name = Field(description="Output name, used in its topics ({prefix}/{name}/set ...).")
    commands: bool = Field(
        default=False,
        description="Accept commands on {prefix}/{name}/set (opt-in; who may publish there is "
                    "the broker's access control).",
    )
    max_age: Duration | None = Field(
        default=30.0,
        description="Refuse a command whose JSON `ts` is older than this (null: no limit).",
    )
    on_broker_loss: Annotated[Literal["keep", "off"], BeforeValidator(_on_off)] = Field(
        default="keep",
        description="off: switch to the off state (off_value for registers) once the broker "
                    "has been unreachable for broker_loss_after.",
    )
    broker_loss_after: Duration = Field(
        default=60.0, description="How long the broker must be unreachable before on_broker_loss."
    )

    @property
    def binary(self) -> bool:
        """On/off (a switch) rather than a number."""
        return True


class BinaryOutput(OutputBase):
    max_on: Duration | None = Field(
        default=None,
        description="Switch off after being on this long (a pump that must never run longer); "
                    "re-sending ON does not extend it.",
    )
    initial: OnOff | None = Field(
        default=None, description="State to set at start (null: leave it as found, read back)."
    )
    on_stop: OnOff | None = Field(
        default=None, description="State to set when the gateway stops (null: leave it)."
    )


class GpioOutput(BinaryOutput):
    """A relay (or any on/off load) on a GPIO line."""

    kind: Literal["gpio"]
    chip: str = Field(default="gpiochip0", min_length=1,
                      description="GPIO chip: a name (gpiochip0) or a path (/dev/gpiochip0).")
    line: int | str = Field(description="Line offset (17) or line name (GPIO17).")
    active_low: bool = Field(
        default=False, description="true: the relay is on when the line is low (most relay boards)."
    )
    initial: OnOff | None = Field(
        default="off",
        description="State at start: a GPIO output has to be driven, so null means off.",
    )
    on_stop: OnOff | None = Field(default="off", description="State to set when the gateway stops.")


class ModbusOutput(OutputBase):
    device: Name = Field(description="The modbus_rtu device whose port and slave this uses.")
    address: int = Field(ge=0, le=65535, description="Coil or holding register address (0-based).")


class ModbusCoilOutput(ModbusOutput, BinaryOutput):
    """A coil (function 05 to write, 01 to read back)."""

    kind: Literal["modbus_coil"]


class ModbusRegisterOutput(ModbusOutput):
    """A holding register (function 06 or 16 to write, 03 to read back), scaled like the map."""

    kind: Literal["modbus_register"]
    type: Literal["int16", "uint16", "int32", "uint32", "float32"] = Field(
        default="uint16", description="Data type; 32-bit types span two registers (function 16)."
    )
    word_order: Literal["big", "little"] = Field(
        default="big", description="32-bit: big = high word first (ABCD), little = CDAB."
    )
    scale: float = Field(default=1.0, description="value = raw * scale + offset (as in registers:).")
    offset: float = Field(default=0.0, description="value = raw * scale + offset.")
    unit: str | None = Field(default=None, max_length=16,
                             description="Unit shown by Home Assistant (e.g. °C).")
    min: float | None = Field(default=None, description="Refuse values below this.")
    max: float | None = Field(default=None, description="Refuse values above this.")
    step: float | None = Field(default=None, gt=0,
                               description="Home Assistant slider step (default: scale).")
    off_value: float | None = Field(
        default=None, description="The safe value on_broker_loss: off writes.")
    initial: float | None = Field(default=None, description="Value to write at start (null: read).")
    on_stop: float | None = Field(default=None, description="Value to write at stop (null: leave).")

    @property
    def binary(self) -> bool:
        return False

    @property
    def registers(self) -> int:
        return _TYPE_REGISTERS[self.type]

    @model_validator(mode="after")
    def _check(self) -> ModbusRegisterOutput:
        _check_range(self.min, self.max)
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + self.registers - 1 > 65535:
            raise ValueError("register range runs past address 65535")
        if self.on_broker_loss == "off" and self.off_value is None:
            raise ValueError("on_broker_loss: off needs off_value (the register's safe value)")
        for key in ("initial", "on_stop", "off_value"):
            v = getattr(self, key)
            if v is not None and not self.allowed(v):
                raise ValueError(f"{key} {v} is outside min/max or the register's range")
        return self

    def raw_range(self) -> tuple[float, float] | None:
        return _TYPE_RANGE.get(self.type)

    def allowed(self, value: float) -> bool:
        if self.min is not None and value < self.min:
            return False
        if self.max is not None and value > self.max:
            return False
        rng = self.raw_range()
        if rng is not None:
            raw = round((value - self.offset) / self.scale)
            return rng[0] <= raw <= rng[1]
        return True


class SerialLineOutput(OutputBase):
    """A command line written to a `lines` device's port (e.g. a microcontroller)."""

    kind: Literal["serial_line"]
    device: Name = Field(description="The `lines` device whose port the command is written to.")
    # Not `on:` / `off:`: YAML 1.1 reads those keys as true / false.
    command_on: str | None = Field(default=None, description="Line sent for ON (e.g. \"RELAY 1\").")
    command_off: str | None = Field(default=None,
                                    description="Line sent for OFF (e.g. \"RELAY 0\").")
    format: str | None = Field(
        default=None,
        description="For a numeric output instead of on/off: the line, with {value} "
                    "(e.g. \"PWM {value}\").",
    )
    min: float | None = Field(default=None, description="Numeric (format): refuse values below.")
    max: float | None = Field(default=None, description="Numeric (format): refuse values above.")
    step: float | None = Field(default=None, gt=0, description="Home Assistant slider step.")
    unit: str | None = Field(default=None, max_length=16, description="Unit shown by HA.")
    off_value: float | None = Field(default=None,
                                    description="Numeric: the safe value on_broker_loss: off sends.")
    line_ending: Literal["lf", "crlf", "cr"] = Field(
        default="lf", description="Appended to a command: lf (\\n), crlf (\\r\\n) or cr (\\r).")
    expect: str | None = Field(
        default=None,
        description="Regular expression a reply line must match to confirm the command "
                    "(e.g. \"^OK\"); without it the state is published once the line is written.",
    )
    reply_timeout: Duration = Field(default=2.0, description="How long to wait for `expect`.")
    max_on: Duration | None = Field(default=None, description="On/off: switch off after this long.")
    initial: OnOffNumber | None = Field(default=None,
                                        description="on/off or a number, sent at start.")
    on_stop: OnOffNumber | None = Field(default=None,
                                        description="on/off or a number, sent at stop.")

    @property
    def binary(self) -> bool:
        return self.format is None

    @property
    def ending(self) -> str:
        return {"lf": "\n", "crlf": "\r\n", "cr": "\r"}[self.line_ending]

    @model_validator(mode="after")
    def _check(self) -> SerialLineOutput:
        if self.format is None:
            if self.command_on is None or self.command_off is None:
                raise ValueError("give command_on and command_off (an on/off output) or format "
                                 "(a number)")
            for key in ("min", "max", "off_value", "step"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is for a numeric output (with `format`)")
            for key in ("initial", "on_stop"):
                if getattr(self, key) not in (None, "on", "off"):
                    raise ValueError(f"{key} must be on or off")
        else:
            if self.command_on is not None or self.command_off is not None:
                raise ValueError("format (a number) and command_on/command_off exclude each other")
            if "{value}" not in self.format:
                raise ValueError("format must contain {value}")
            if self.max_on is not None:
                raise ValueError("max_on is for an on/off output")
            _check_range(self.min, self.max)
            if self.on_broker_loss == "off" and self.off_value is None:
                raise ValueError("on_broker_loss: off needs off_value")
            for key in ("initial", "on_stop"):
                if isinstance(getattr(self, key), str):
                    raise ValueError(f"{key} must be a number for a numeric output")
        for text in (self.command_on, self.command_off, self.format):
            if text is not None and ("\n" in text or "\r" in text):
                raise ValueError("a command is one line: no line breaks inside")
        if self.expect is not None:
            try:
                re.compile(self.expect)
            except re.error as exc:
                raise ValueError(f"expect is not a regular expression: {exc}") from None
        return self

    def allowed(self, value: float) -> bool:
        return not ((self.min is not None and value < self.min)
                    or (self.max is not None and value > self.max))


def _check_range(lo: float | None, hi: float | None) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min ({lo}) is greater than max ({hi})")


OutputConfig = Annotated[
    GpioOutput | ModbusCoilOutput | ModbusRegisterOutput | SerialLineOutput,
    Field(discriminator="kind"),
]
AnyOutput = GpioOutput | ModbusCoilOutput | ModbusRegisterOutput | SerialLineOutput


def output_problems(outputs: list[AnyOutput], device_drivers: dict[str, str],
                    extra_names: dict[str, str]) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-checks between outputs and devices: (path in the file, problem) pairs.

    `device_drivers`: device name -> driver; `extra_names`: other names that own a topic
    under the prefix (the inference name, status, health) -> what they are.
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: dict[str, int] = {}
    lines: dict[tuple[str, str], str] = {}
    coils: dict[tuple[str, str, int], str] = {}
    for i, out in enumerate(outputs):
        where: tuple[str | int, ...] = ("outputs", i)
        if out.name in seen:
            problems.append(((*where, "name"),
                             f"duplicate output name {out.name!r} (also outputs.{seen[out.name]})"))
        seen.setdefault(out.name, i)
        if out.name in device_drivers:
            problems.append(((*where, "name"), f"{out.name!r} is also a device name; both use the "
                             f"topic {{prefix}}/{out.name}"))
        elif out.name in extra_names:
            problems.append(((*where, "name"), f"{out.name!r} is {extra_names[out.name]}"))
        if isinstance(out, GpioOutput):
            chip = out.chip if out.chip.startswith("/") else f"/dev/{out.chip}"
            key = (chip, str(out.line))
            if key in lines:
                problems.append(((*where, "line"),
                                 f"line {out.line} of {out.chip} is already output {lines[key]!r}"))
            lines.setdefault(key, out.name)
        elif isinstance(out, ModbusCoilOutput | ModbusRegisterOutput | SerialLineOutput):
            want = "lines" if isinstance(out, SerialLineOutput) else "modbus_rtu"
            driver = device_drivers.get(out.device)
            if driver is None:
                known = [n for n, d in device_drivers.items() if d == want]
                problems.append(((*where, "device"), f"unknown device {out.device!r} (configured "
                                 f"{want} devices: {', '.join(known) or 'none'})"))
            elif driver != want:
                problems.append(((*where, "device"), f"device {out.device!r} is a {driver} device; "
                                 f"a {out.kind} output needs a {want} device"))
            if isinstance(out, ModbusCoilOutput | ModbusRegisterOutput):
                table = "coil" if isinstance(out, ModbusCoilOutput) else "register"
                n = 1 if isinstance(out, ModbusCoilOutput) else out.registers
                for a in range(out.address, out.address + n):
                    ckey = (out.device, table, a)
                    if ckey in coils:
                        problems.append(((*where, "address"), f"{table} {a} of {out.device!r} is "
                                         f"already output {coils[ckey]!r}"))
                        break
                    coils[ckey] = out.name
    return problems
