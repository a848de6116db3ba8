"""Control from MQTT end to end: a real Mosquitto, an in-process gateway, simulated outputs.

Commands are published by a separate paho client, as a user's `mosquitto_pub` or Home
Assistant would; what the simulated hardware holds is read from the simulator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.config import parse_config
from gateway.daemon import Gateway
from hardware_sim.world import SimWorld
from tests.support import Mosquitto, Subscriber, retained, running_gateway, sim_header, wait_until

PREFIX = "gateway/ctl"

METER = """\
  - name: meter
    driver: modbus_rtu
    port: /dev/ttyUSB1
    baudrate: 19200
    slave: 3
    interval: {interval}
    registers:
      - {{name: voltage, unit: v, address: 0, type: uint16, scale: 0.1}}
    sim: {{values: {{voltage_v: 230.4}}{sim}}}
"""

MCU = """\
  - name: mcu
    driver: lines
    port: /dev/ttyACM0
    format: kv
    fields: [{name: temp, unit: c}]
    interval: 1s
    timeout: 0.2s
    sim: {rate_hz: 5}
"""


def config(tmp_path: Path, port: int, outputs: str, devices: str = "") -> Any:
    text = (sim_header("ctl", port, tmp_path).replace(
                f"port: {port}\n", f"port: {port}\n  reconnect_max: 0.5s\n")
            + (f"devices:\n{devices}" if devices else "")
            + "outputs:\n" + outputs)
    return parse_config(text, name=str(tmp_path / "gw.yaml"))


class Commander:
    """A client that publishes commands (QoS 1, so PUBACK says the broker took it)."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None,
                 protocol: MQTTProtocolVersion = mqtt.MQTTv311) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, output: str, payload: str | dict[str, Any], retain: bool = False) -> None:
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        info = self.client.publish(f"{PREFIX}/{output}/set", data, qos=1, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def gateway_with(cfg: Any, port: int) -> Iterator[tuple[Gateway, Subscriber, Commander]]:
    sub = Subscriber(port, f"{PREFIX}/#").start()
    cmd = Commander(port)
    try:
        with running_gateway(cfg) as gw:
            # Subscribed once the gateway is online (status) and its subscription is in.
            assert sub.wait_for(lambda s: any(m.payload == b"online" for m in s.on(f"{PREFIX}/status")))
            yield gw, sub, cmd
    finally:
        cmd.close()
        sub.stop()


def sim(gw: Gateway) -> SimWorld:
    assert gw.sim is not None
    return gw.sim


def results(sub: Subscriber, output: str) -> list[dict[str, Any]]:
    return [m.json() for m in sub.on(f"{PREFIX}/{output}/result")]


def wait_result(sub: Subscriber, output: str, **match: Any) -> dict[str, Any]:
    def found(s: Subscriber) -> bool:
        return any(all(r.get(k) == v for k, v in match.items()) for r in results(s, output))

    assert sub.wait_for(found), f"no result {match} on {output}: {results(sub, output)}"
    return next(r for r in results(sub, output) if all(r.get(k) == v for k, v in match.items()))


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


RELAY = """\
  - name: relay
    kind: gpio
    line: 17
    active_low: true
    commands: true
"""


def test_a_command_switches_the_simulated_relay_and_the_retained_state_follows(
    tmp_path: Path, broker: Mosquitto
) -> None:
    cfg = config(tmp_path, broker.port, RELAY)
    with gateway_with(cfg, broker.port) as (gw, sub, cmd):
        line = sim(gw).outputs["relay"]
        # initial: off (the default of a gpio output), published as the state.
        assert wait_until(lambda: retained(broker.port, f"{PREFIX}/relay/state") == b"OFF")
        assert line.on is False and line.level is True  # active low: off is a high line
        cmd.send("relay", "ON")
        r = wait_result(sub, "relay", ok=True, value="ON")
        assert r["reason"] is None and r["source"] == "command"
        assert line.on is True and line.level is False
        assert retained(broker.port, f"{PREFIX}/relay/state") == b"ON"
        # JSON with ts and id; the id comes back.
        cmd.send("relay", {"value": "off", "ts": iso(datetime.now(UTC)), "id": "c-2"})
        r = wait_result(sub, "relay", id="c-2")
        assert r["ok"] is True and r["value"] == "OFF"
        assert line.on is False
        assert retained(broker.port, f"{PREFIX}/relay/state") == b"OFF"
        # Words HA and scripts use.
        for word, want in (("true", True), ("0", False), ("on", True)):
            n = len(results(sub, "relay"))
            cmd.send("relay", word)
            assert sub.wait_for(lambda s, n=n: len(results(s, "relay")) > n)
            assert line.on is want
    # on_stop: off (the gpio default), and the line was released.
    assert line.on is False and not line.requested


def test_out_of_range_stale_retained_and_garbage_commands_are_refused_with_a_reason(
    tmp_path: Path, broker: Mosquitto
) -> None:
    outputs = """\
  - name: setpoint
    kind: modbus_register
    device: meter
    address: 10
    type: int16
    scale: 0.1
    unit: °C
    min: 5
    max: 30
    commands: true
    max_age: 10s
"""
    cfg = config(tmp_path, broker.port, outputs, METER.format(interval="1s", sim=""))
    with gateway_with(cfg, broker.port) as (gw, sub, cmd):
        slave = sim(gw).extras["meter"]
        slave.set_registers(3, "holding", 10, [215])  # 21.5 °C before we start
        cmd.send("setpoint", "22.5")
        r = wait_result(sub, "setpoint", ok=True)
        assert r["value"] == 22.5
        assert slave.units[3]["holding"][10] == 225
        assert retained(broker.port, f"{PREFIX}/setpoint/state") == b"22.5"
        writes = len(slave.writes)

        cmd.send("setpoint", {"value": 31, "id": "high"})
        r = wait_result(sub, "setpoint", id="high")
        assert r["ok"] is False and r["reason"] == "31 is above max 30"
        cmd.send("setpoint", "4.9")
        r = wait_result(sub, "setpoint", ok=False, value=4.9)
        assert r["reason"] == "4.9 is below min 5"
        old = iso(datetime.now(UTC) - timedelta(minutes=5))
        cmd.send("setpoint", {"value": 20, "ts": old, "id": "old"})
        r = wait_result(sub, "setpoint", id="old")
        assert r["ok"] is False and r["reason"].startswith("stale: sent 30")
        assert "max_age is 10 s" in r["reason"]
        for bad, why in (("warm", "expected a number, got 'warm'"),
                         ('{"value": 21, "when": 1}', "unknown JSON key(s): when"),
                         ('{"value": 21', "payload is not valid JSON")):
            cmd.send("setpoint", bad)
            assert sub.wait_for(lambda s, why=why: any(
                (x["reason"] or "").startswith(why) for x in results(s, "setpoint"))), why
        # Nothing refused reached the wire; the register still holds the last good value.
        assert len(slave.writes) == writes
        assert slave.units[3]["holding"][10] == 225
        assert retained(broker.port, f"{PREFIX}/setpoint/state") == b"22.5"


def test_a_retained_command_is_refused_and_does_not_switch(tmp_path: Path, broker: Mosquitto
                                                          ) -> None:
    # Left on the broker before the gateway starts: it arrives as retained on subscribe
    # (and would again on every reconnect).
    early = Commander(broker.port)
    early.send("relay", {"value": "ON", "id": "kept"}, retain=True)
    early.close()
    cfg = config(tmp_path, broker.port, RELAY)
    with gateway_with(cfg, broker.port) as (gw, sub, cmd):
        r = wait_result(sub, "relay", id="kept")
        assert r["ok"] is False and r["reason"].startswith("retained command refused")
        assert sim(gw).outputs["relay"].on is False
        cmd.client.publish(f"{PREFIX}/relay/set", b"", qos=1, retain=True).wait_for_publish(10)
        cmd.send("relay", "ON")  # the same command, not retained, is executed
        wait_result(sub, "relay", ok=True, value="ON")
        assert sim(gw).outputs["relay"].on is True


def test_modbus_coil_and_32_bit_register_are_written_once_and_read_back(
    tmp_path: Path, broker: Mosquitto
) -> None:
    outputs = """\
  - name: pump
    kind: modbus_coil
    device: meter
    address: 4
    commands: true
  - name: flow
    kind: modbus_register
    device: meter
    address: 20
    type: float32
    word_order: little
    commands: true
"""
    cfg = config(tmp_path, broker.port, outputs, METER.format(interval="1s", sim=""))
    with gateway_with(cfg, broker.port) as (gw, sub, cmd):
        slave = sim(gw).extras["meter"]
        slave.set_registers(3, "holding", 20, [0, 0])
        # Read back at start (no initial: configured): the coil is off.
        assert wait_until(lambda: retained(broker.port, f"{PREFIX}/pump/state") == b"OFF")
        cmd.send("pump", "ON")
        wait_result(sub, "pump", ok=True, value="ON")
        assert slave.coil(3, 4) is True
        cmd.send("flow", "12.25")
        wait_result(sub, "flow", ok=True, value=12.25)
        from gateway.protocols.modbus import decode_value

        regs = slave.units[3]["holding"]
        assert decode_value([regs[20], regs[21]], "float32", "little") == 12.25
        # A slave that stops answering: the write is sent once, reported failed, not repeated.
        writes = len(slave.writes)
        slave.silent = True
        cmd.send("pump", {"value": "OFF", "id": "lost"})
        r = wait_result(sub, "pump", id="lost")
        assert r["ok"] is False and "no valid reply" in r["reason"]
        assert len(slave.writes) == writes + 1  # one write frame on the wire, no retry
        slave.silent = False
        assert slave.coil(3, 4) is True  # this slave ignored it (a lost reply looks the same)
        assert retained(broker.port, f"{PREFIX}/pump/state") == b"ON"


def test_max_on_switches_off_and_says_so(tmp_path: Path, broker: Mosquitto) -> None:
    outputs = RELAY + "    max_on: 1s\n"
    cfg = config(tmp_path, broker.port, outputs)
    with gateway_with(cfg, broker.port) as (gw, sub, cmd):
        line = sim(gw).outputs["relay"]
        cmd.send("relay", "ON")
        wait_result(sub, "relay", ok=True, value="ON", source="command")
        r = wait_result(sub, "relay", source="max_on")
        assert r["ok"] is True and r["value"] == "OFF"
        assert r["reason"] == "max_on (1 s) elapsed: switched off"
        assert line.on is False
        assert retained(broker.port, f"{PREFIX}/relay/state") == b"OFF"
        on_at = next(t for t, v in line.history if v)
        off_at = next(t for t, v in line.history if not v and t > on_at)
        assert off_at - on_at >= 1.0  # never before max_on


def test_the_fallback_state_is_applied_when_the_broker_stays_away(
    tmp_path: Path, broker: Mosquitto
) -> None:
    outputs = RELAY + "    on_broker_loss: off\n    broker_loss_after: 2s\n" + """\
  - name: fan
    kind: gpio
    line: 18
    commands: true
"""
    cfg = config(tmp_path, broker.port, outputs)
    with gateway_with(cfg, broker.port) as (gw, sub, cmd):
        relay, fan = sim(gw).outputs["relay"], sim(gw).outputs["fan"]
        cmd.send("relay", "ON")
        cmd.send("fan", "ON")
        wait_result(sub, "relay", ok=True, value="ON")
        wait_result(sub, "fan", ok=True, value="ON")
        cmd.close()
        sub.stop()
        lost = time.monotonic()  # before: the gateway cannot notice the loss earlier than this
        broker.stop()
        assert wait_until(lambda: not relay.on, timeout=30)
        off_at = [t for t, v in relay.history if not v][-1]
        assert off_at - lost >= 2.0  # not before broker_loss_after
        assert fan.on is True  # on_broker_loss: keep (the default)
        broker.start()
        # After the reconnect the state says what happened.
        assert wait_until(lambda: retained(broker.port, f"{PREFIX}/relay/state") == b"OFF",
                          timeout=30)
        assert retained(broker.port, f"{PREFIX}/fan/state") == b"ON"


def test_serial_line_command_is_written_by_the_devices_reader_and_acknowledged(
    tmp_path: Path, broker: Mosquitto
) -> None:
    outputs = """\
  - name: valve
    kind: serial_line
    device: mcu
    command_on: "VALVE 1"
    command_off: "VALVE 0"
    expect: "^OK VALVE"
    commands: true
  - name: pwm
    kind: serial_line
    device: mcu
    format: "PWM {value}"
    min: 0
    max: 255
    commands: true
"""
    cfg = config(tmp_path, broker.port, outputs, MCU)
    with gateway_with(cfg, broker.port) as (gw, sub, cmd):
        mcu = sim(gw).extras["mcu"]
        cmd.send("valve", "ON")
        wait_result(sub, "valve", ok=True, value="ON")
        cmd.send("pwm", "128")
        wait_result(sub, "pwm", ok=True, value=128)
        # pwm has no `expect`: confirmed once written, read by the device a moment later.
        assert wait_until(lambda: mcu.received == ["VALVE 1", "PWM 128"])
        assert retained(broker.port, f"{PREFIX}/valve/state") == b"ON"
        # The replies were taken as replies, not as readings; readings kept coming.
        assert gw.health.devices["mcu"].counters.get("commands_written") == 2
        n = gw.health.devices["mcu"].readings
        assert wait_until(lambda: gw.health.devices["mcu"].readings > n + 2)
        # A device that does not answer: refused after reply_timeout, state unchanged.
        mcu.reply = "none"
        cmd.send("valve", {"value": "OFF", "id": "quiet"})
        r = wait_result(sub, "valve", id="quiet")
        assert r["ok"] is False and "no reply matching '^OK VALVE'" in r["reason"]
        assert retained(broker.port, f"{PREFIX}/valve/state") == b"ON"


def documented_commands() -> list[list[str]]:
    """The mosquitto_pub lines of docs/control.md's sh blocks, as argv."""
    import shlex

    from tests.test_docs_commands import sh_commands

    return [shlex.split(cmd) for doc, _, cmd in sh_commands()
            if doc == "control.md" and cmd.startswith("mosquitto_pub")]


def test_the_documented_commands_switch_the_demo(tmp_path: Path, broker: Mosquitto) -> None:
    """docs/control.md's exact mosquitto_pub commands against config/simulator.yaml."""
    import subprocess

    import yaml

    from tests.support import REPO

    data = yaml.safe_load((REPO / "config/simulator.yaml").read_text())
    data["mqtt"]["port"] = broker.port
    data["buffer"]["path"] = str(tmp_path / "spool.db")
    data["inference"]["enabled"] = False  # not what this is about; saves a process
    cfg = parse_config(yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                       name=str(tmp_path / "demo.yaml"))
    commands = documented_commands()
    assert len(commands) == 3, commands
    sub = Subscriber(broker.port, "gateway/demo/#").start()
    try:
        with running_gateway(cfg) as gw:
            relay = sim(gw).outputs["relay"]
            meter = sim(gw).extras["meter"]
            assert sub.wait_for(lambda s: s.on("gateway/demo/setpoint/state"))  # initial: 20
            assert meter.units[1]["holding"][10] == 200
            expected = [lambda: relay.on, lambda: meter.units[1]["holding"][10] == 215,
                        lambda: not relay.on]
            for argv, done in zip(commands, expected, strict=True):
                subprocess.run([*argv, "-p", str(broker.port)], check=True, timeout=30)
                assert wait_until(done), argv
            assert wait_until(lambda: retained(broker.port, "gateway/demo/relay/state") == b"OFF")
            assert retained(broker.port, "gateway/demo/setpoint/state") == b"21.5"
            assert any(m.json()["id"] == "try-1" and m.json()["ok"]
                       for m in sub.on("gateway/demo/relay/result"))
    finally:
        sub.stop()
