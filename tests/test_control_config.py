"""Outputs in the config: validation with line numbers, `check` and its extras, payloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConfigError, parse_config
from gateway.config.outputs import GpioOutput
from gateway.control.command import Refused, check_age, parse

HEAD = """\
gateway: {id: g}
devices:
  - {name: meter, driver: modbus_rtu, port: /dev/ttyUSB0, registers: [{name: v, address: 0}]}
  - {name: mcu, driver: lines, port: /dev/ttyACM0, format: kv}
outputs:
"""


def problems(outputs: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(HEAD + outputs, name="gw.yaml")
    return [str(p) for p in info.value.problems]


def test_a_valid_outputs_section_loads() -> None:
    cfg = parse_config(HEAD + """\
  - {name: relay, kind: gpio, line: 17, active_low: true, commands: true, max_on: 10m}
  - {name: pump, kind: modbus_coil, device: meter, address: 0, on_broker_loss: off}
  - {name: setpoint, kind: modbus_register, device: meter, address: 10, min: 5, max: 30,
     scale: 0.1, type: int16, off_value: 5, on_broker_loss: off, broker_loss_after: 30s}
  - {name: valve, kind: serial_line, device: mcu, command_on: V1, command_off: V0, expect: ^OK}
""")
    relay, pump, setpoint, valve = cfg.outputs
    assert isinstance(relay, GpioOutput)
    assert relay.max_on == 600 and relay.initial == "off" and relay.on_stop == "off"
    assert pump.on_broker_loss == "off"  # YAML's bare off (false) read as the word
    assert setpoint.broker_loss_after == 30 and not setpoint.binary
    assert valve.binary and valve.max_age == 30


@pytest.mark.parametrize(("outputs", "expected"), [
    ("  - {name: pump, kind: modbus_coil, device: nope, address: 0}\n",
     "gw.yaml:6: outputs.0.device: unknown device 'nope' (configured modbus_rtu devices: meter)"),
    ("  - {name: pump, kind: modbus_coil, device: mcu, address: 0}\n",
     "gw.yaml:6: outputs.0.device: device 'mcu' is a lines device; a modbus_coil output needs "
     "a modbus_rtu device"),
    ("  - {name: meter, kind: gpio, line: 4}\n",
     "gw.yaml:6: outputs.0.name: 'meter' is also a device name; both use the topic "
     "{prefix}/meter"),
    ("  - {name: status, kind: gpio, line: 4}\n",
     "gw.yaml:6: outputs.0.name: 'status' is reserved for the gateway's own status topic"),
    ("  - {name: a, kind: gpio, line: 4}\n  - {name: a, kind: gpio, line: 5}\n",
     "gw.yaml:7: outputs.1.name: duplicate output name 'a' (also outputs.0)"),
    ("  - {name: a, kind: gpio, line: 4}\n  - {name: b, kind: gpio, line: 4}\n",
     "gw.yaml:7: outputs.1.line: line 4 of gpiochip0 is already output 'a'"),
    ("  - {name: sp, kind: modbus_register, device: meter, address: 1, min: 30, max: 5}\n",
     "gw.yaml:6: outputs.0: min (30.0) is greater than max (5.0)"),
    ("  - {name: sp, kind: modbus_register, device: meter, address: 1, on_broker_loss: off}\n",
     "gw.yaml:6: outputs.0: on_broker_loss: off needs off_value "
     "(the register's safe value)"),
    ("  - {name: sp, kind: modbus_register, device: meter, address: 1, max: 10, initial: 11}\n",
     "gw.yaml:6: outputs.0: initial 11.0 is outside min/max or the register's "
     "range"),
    ("  - {name: v, kind: serial_line, device: mcu, command_on: V1}\n",
     "gw.yaml:6: outputs.0: give command_on and command_off (an on/off output) or "
     "format (a number)"),
    ("  - {name: r, kind: relay, line: 4}\n",
     "gw.yaml:6: outputs.0: input tag 'relay' found using 'kind' does not match any of "
     "the expected tags: 'gpio', 'modbus_coil', 'modbus_register', 'serial_line'"),
    ("  - {name: r, kind: gpio, line: 4, max_onn: 5}\n",
     "gw.yaml:6: outputs.0.max_onn: unknown key; did you mean 'max_on'?"),
])
def test_bad_outputs_are_refused_with_their_line(outputs: str, expected: str) -> None:
    got = problems(outputs)
    assert expected in got, got


def test_check_refuses_gpio_outputs_without_the_gpio_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.config.checks as checks

    text = (f"gateway: {{id: g}}\nbuffer: {{path: {tmp_path}/s.db}}\noutputs:\n"
            "  - {name: relay, kind: gpio, line: 17}\n")
    monkeypatch.setattr(checks, "_importable", lambda module: module != "gpiod")
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    got = [str(p) for p in checks.run_checks(parse_config(text, name=str(path)))]
    assert got == [f"{path}:4: outputs.0.kind: a gpio output needs the gpio extra: "
                   "pip install 'edge-gateway[gpio]'"]
    sim = parse_config(text.replace("id: g", "id: g, simulate: true"), name=str(path))
    assert checks.run_checks(sim) == []


@pytest.mark.parametrize(("payload", "binary", "value"), [
    (b"ON", True, True), (b"off", True, False), (b" 1 ", True, True), (b"false", True, False),
    (b'{"value": "ON", "id": "x"}', True, True), (b'{"value": 0}', True, False),
    (b"21.5", False, 21.5), (b'{"value": "-3"}', False, -3.0), (b'{"value": 7}', False, 7.0),
])
def test_payloads(payload: bytes, binary: bool, value: bool | float) -> None:
    assert parse(payload, binary).value == value


@pytest.mark.parametrize(("payload", "binary"), [
    (b"maybe", True), (b"2", True), (b"ON", False), (b"nan", False), (b"inf", False),
    (b'{"value": true}', False), (b"[1]", False), (b'{"id": "x"}', True), (b"\xff", True),
    (b'{"value": 1, "ts": 5}', True), (b'{"value": 1, "ts": "yesterday"}', True),
])
def test_nonsense_is_refused(payload: bytes, binary: bool) -> None:
    with pytest.raises(Refused):
        parse(payload, binary)


def test_age() -> None:
    cmd = parse(b'{"value": "ON", "ts": "2026-11-30T06:00:00Z"}', True)
    assert cmd.ts == 1796018400.0
    check_age(cmd, 30, cmd.ts + 29.9)
    with pytest.raises(Refused, match=r"stale: sent 31\.0 s ago, max_age is 30 s"):
        check_age(cmd, 30, cmd.ts + 31)
    with pytest.raises(Refused, match="in the future"):
        check_age(cmd, 30, cmd.ts - 31)
    check_age(cmd, None, cmd.ts + 1e6)  # max_age: null
    offset = parse(b'{"value": 1, "ts": "2026-11-30T07:00:00+01:00"}', True)
    assert offset.ts == cmd.ts


@given(st.binary(max_size=200), st.booleans())
def test_any_payload_is_a_command_or_refused(payload: bytes, binary: bool) -> None:
    try:
        cmd = parse(payload, binary)
    except Refused as exc:
        assert str(exc)
        return
    assert isinstance(cmd.value, bool) == binary
