"""Control on the wire and at the broker: a command never lands inside a Modbus poll's
request/response (raw bytes on a real pty), and the sample Mosquitto ACL keeps a client
without rights from switching anything."""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.protocols.modbus import crc_ok, with_crc
from tests.support import Mosquitto, running_gateway, wait_until
from tests.test_control import PREFIX, Commander, config, gateway_with, results, sim

ROOT = Path(__file__).resolve().parent.parent

FAST_METER = """\
  - name: meter
    driver: modbus_rtu
    port: /dev/ttyUSB1
    baudrate: 19200
    slave: 3
    interval: 50ms
    timeout: 2s           # a loaded test machine may be slow to answer; writes are not retried
    registers:
      - {name: voltage, unit: v, address: 0, type: uint16, scale: 0.1}
      - {name: current, unit: a, address: 1, type: uint16, scale: 0.001}
    sim: {values: {voltage_v: 230.4, current_a: 1.2}, reply_delay: 0.02, log_wire: true}
"""
SETPOINT = """\
  - name: setpoint
    kind: modbus_register
    device: meter
    address: 10
    commands: true
    max: 1000
"""


def frames(wire: list[tuple[str, float, bytes]]) -> list[tuple[str, float, bytes]]:
    """The wire log as whole frames in order, each with the time its last byte arrived:
    requests cut from the rx stream by function code."""
    out: list[tuple[str, float, bytes]] = []
    buf = bytearray()
    for kind, t, data in wire:
        if kind == "tx":
            assert not buf, f"a reply went out while {bytes(buf).hex()} was half received"
            out.append(("tx", t, data))
            continue
        buf += data
        while len(buf) >= 8:
            size = 9 + buf[6] if buf[1] == 16 else 8
            if len(buf) < size:
                break
            out.append(("rx", t, bytes(buf[:size])))
            del buf[:size]
    return out


def show(seq: list[tuple[str, float, bytes]], i: int) -> str:
    return "\n".join(f"{k} {t - seq[0][1]:9.4f} {f.hex()}" for k, t, f in seq[max(0, i - 4):i + 4])


def test_a_command_never_lands_inside_a_polls_request_and_response(
    tmp_path: Path, broker: Mosquitto
) -> None:
    cfg = config(tmp_path, broker.port, SETPOINT, FAST_METER)
    with gateway_with(cfg, broker.port) as (gw, sub, cmd):
        slave = sim(gw).extras["meter"]
        slave.set_registers(3, "holding", 10, [0])
        assert wait_until(lambda: slave.answers > 10)  # polls are running back to back
        for i in range(1, 26):
            cmd.send("setpoint", str(i * 10))
        assert sub.wait_for(lambda s: len([r for r in results(s, "setpoint")
                                           if r["source"] == "command"]) == 25, timeout=60)
        failed = [r for r in results(sub, "setpoint") if r["source"] == "command" and not r["ok"]]
        assert not failed, failed
        assert slave.units[3]["holding"][10] == 250
        wire = list(slave.wire)
    seq = frames(wire)
    # Every request is whole (valid CRC) and answered before the next one starts. (A request
    # may follow an unanswered one only after the client's timeout: a retry, not a collision.)
    for i, (kind, t, frame) in enumerate(seq):
        if kind != "rx":
            continue
        assert crc_ok(frame), show(seq, i)
        if i + 1 < len(seq) and seq[i + 1][0] == "rx":
            assert seq[i + 1][1] - t >= 2.0, "request sent before the previous was answered:\n" \
                + show(seq, i)
    assert slave.overlaps == 0
    writes = [f for k, _, f in seq if k == "rx" and f[1] == 6]
    polls = [f for k, _, f in seq if k == "rx" and f[1] == 3 and f[2:4] == b"\x00\x00"]
    # How many polls fit between the commands depends on the machine's load; that they go on
    # is what matters (below), not their count.
    assert len(writes) == 25 and polls
    # The commands came while polls were going on (the test had something to prove):
    first_write = next(i for i, (k, _, f) in enumerate(seq) if k == "rx" and f[1] == 6)
    assert any(k == "rx" and f[1] == 3 for k, _, f in seq[first_write:])


def test_the_wire_check_sees_a_frame_sent_during_a_poll(tmp_path: Path, broker: Mosquitto) -> None:
    """The detector itself: a second writer on the same line (no lock) is caught."""
    cfg = config(tmp_path, broker.port, SETPOINT, FAST_METER)
    with running_gateway(cfg) as gw:
        slave = sim(gw).extras["meter"]
        assert wait_until(lambda: slave.answers > 5)
        rogue = os.open(slave.path, os.O_WRONLY | os.O_NOCTTY)
        try:
            frame = with_crc(bytes([3, 6, 0, 10, 0, 7]))
            for _ in range(40):
                os.write(rogue, frame)
                time.sleep(0.013)
        finally:
            os.close(rogue)
        wire = list(slave.wire)
    assert slave.overlaps > 0
    try:
        seq = frames(wire)
    except AssertionError:
        return  # a reply cut into a half-received request: caught
    assert any(k == "rx" and n[0] == "rx" and n[1] - t < 2.0
               for (k, t, _), n in itertools.pairwise(seq))


def _passwd(path: Path, users: dict[str, str]) -> None:
    for i, (user, password) in enumerate(users.items()):
        subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else [])
                       + [str(path), user, password], check=True, capture_output=True)
    os.chmod(path, 0o644)


def test_the_sample_acl_refuses_a_client_without_rights_on_the_set_topic(tmp_path: Path) -> None:
    work = tmp_path / "acl-broker"
    work.mkdir()
    users = {"edge-gateway": "gw-secret", "homeassistant": "ha-secret", "dashboard": "dash-secret"}
    _passwd(work / "passwd", users)
    acl = work / "acl"
    acl.write_text((ROOT / "docs/examples/mosquitto-acl.conf").read_text())
    os.chmod(acl, 0o644)
    # The last allow_anonymous wins: no anonymous clients, as the sample says.
    b = Mosquitto(work, extra_conf=f"allow_anonymous false\npassword_file {work}/passwd\n"
                                   f"acl_file {acl}\n")
    b.start()
    try:
        pw = tmp_path / "gw-password"
        pw.write_text("gw-secret\n")
        os.chmod(pw, 0o600)
        cfg = config(tmp_path, b.port, """\
  - name: relay
    kind: gpio
    line: 17
    commands: true
""")
        cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(
            update={"username": "edge-gateway", "password_file": pw})})
        observer = _client(b.port, "homeassistant", "ha-secret", mqtt.MQTTv311)
        seen: list[Any] = []
        observer.on_message = lambda c, u, m: seen.append((m.topic, bytes(m.payload)))
        observer.subscribe(f"{PREFIX}/#", qos=1)
        time.sleep(0.2)
        with running_gateway(cfg) as gw:
            relay = sim(gw).outputs["relay"]
            assert wait_until(lambda: (f"{PREFIX}/relay/state", b"OFF") in seen)
            # The dashboard may read but not command: MQTT 5 tells it why (0x87).
            dash = _client(b.port, "dashboard", "dash-secret", mqtt.MQTTv5)
            acks: list[Any] = []
            dash.on_publish = lambda c, u, mid, rc, props: acks.append(rc)
            dash.publish(f"{PREFIX}/relay/set", b"ON", qos=1)
            assert wait_until(lambda: bool(acks))
            assert acks[0].is_failure and acks[0].value == 0x87  # Not authorized
            time.sleep(0.5)
            assert relay.on is False
            assert not [p for t, p in seen if t.endswith("/result") and b'"command"' in p]
            dash.disconnect()
            dash.loop_stop()
            # Home Assistant's account may.
            ha = Commander(b.port, "homeassistant", "ha-secret")
            ha.send("relay", "ON")
            assert wait_until(lambda: relay.on)
            ha.close()
        observer.disconnect()
        observer.loop_stop()
    finally:
        b.stop()


def _client(port: int, user: str, password: str, protocol: MQTTProtocolVersion) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    c.username_pw_set(user, password)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(10)
    return c
