"""SIGHUP: a valid new config restarts only the devices that changed; an invalid one
changes nothing. Queued data and per-device `seq` are never touched."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from gateway.config import load_config
from gateway.daemon import Gateway
from gateway.service.reload import plan_devices, reload_gateway
from tests.support import GatewayProcess, Mosquitto, Subscriber, write_config

PREFIX = "gateway/reload-test"


def device(name: str, driver: str, address: str, interval: str, value: float,
           bus: int = 1) -> str:
    return f"""
  - name: {name}
    driver: {driver}
    bus: {bus}
    address: {address}
    interval: {interval}
    sim:
      values: {{temperature_c: {value}}}
"""


def config_text(tmp_path: Path, port: int, devices: str, mqtt_extra: str = "") -> str:
    return f"""
gateway:
  id: reload-test
  simulate: true
mqtt:
  host: 127.0.0.1
  port: {port}
{mqtt_extra}
buffer:
  path: {tmp_path}/spool.db
devices:{devices}
"""


AIR = device("air", "bme280", "0x76", "100ms", 21.5)
PROBE_OLD = device("probe", "tmp102", "0x48", "100ms", -12.25)
PROBE_NEW = device("probe", "tmp102", "0x48", "100ms", 30.5)
GONE = device("gone", "tmp102", "0x49", "100ms", 5.0, bus=2)
FRESH = device("fresh", "tmp102", "0x4a", "100ms", 7.5, bus=2)


def seqs(sub: Subscriber, name: str) -> list[int]:
    return [m.json()["seq"] for m in sub.on(f"{PREFIX}/{name}")]


def wait_log(gw: GatewayProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gw.output():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{gw.output()[-3000:]}"
        time.sleep(0.2)


def test_sighup_valid_config_restarts_only_changed_devices(tmp_path: Path,
                                                           broker: Mosquitto) -> None:
    cfg = write_config(tmp_path / "gw.yaml",
                       config_text(tmp_path, broker.port, AIR + PROBE_OLD + GONE))
    sub = Subscriber(broker.port, f"{PREFIX}/#").start()
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count(f"{PREFIX}/probe") >= 5
                            and s.count(f"{PREFIX}/gone") >= 5), gw.output()
        cfg.write_text(config_text(tmp_path, broker.port, AIR + PROBE_NEW + FRESH))
        gw.signal(signal.SIGHUP)
        wait_log(gw, "reload: applied")
        gone_at_reload = sub.count(f"{PREFIX}/gone")
        air_at_reload = sub.count(f"{PREFIX}/air")
        assert sub.wait_for(
            lambda s: len([m for m in s.on(f"{PREFIX}/probe") if m.json()["temperature_c"] == 30.5])
            >= 5 and s.count(f"{PREFIX}/fresh") >= 5
            and s.count(f"{PREFIX}/air") >= air_at_reload + 5), gw.output()
        time.sleep(1.0)  # ten of gone's intervals: nothing more may come from it
        assert sub.count(f"{PREFIX}/gone") == gone_at_reload
    finally:
        code = gw.stop()
        sub.stop()
    out = gw.output()
    assert code == 0, out
    assert "reload: device probe changed; restarted" in out
    assert "reload: device fresh added" in out
    assert "reload: device gone removed" in out
    assert "device air" not in out  # untouched
    assert "1 added, 1 changed, 1 removed, 1 untouched" in out
    # seq: unbroken for the untouched device and for the restarted one.
    for name in ("air", "probe"):
        got = seqs(sub, name)
        assert got == list(range(1, len(got) + 1)), (name, got)
    probe = [m.json() for m in sub.on(f"{PREFIX}/probe")]
    values = [p["temperature_c"] for p in probe]
    first_new = values.index(30.5)
    assert set(values[:first_new]) == {-12.25} and set(values[first_new:]) == {30.5}
    assert seqs(sub, "fresh")[:3] == [1, 2, 3]
    assert "Traceback" not in out


def test_sighup_invalid_config_keeps_running(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = write_config(tmp_path / "gw.yaml", config_text(tmp_path, broker.port, AIR + PROBE_OLD))
    sub = Subscriber(broker.port, f"{PREFIX}/#").start()
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count(f"{PREFIX}/probe") >= 3), gw.output()
        bad = config_text(tmp_path, broker.port, AIR + PROBE_NEW).replace(
            "address: 0x48", "address: 0x99").replace("interval: 100ms", "intervall: 100ms", 1)
        cfg.write_text(bad)
        gw.signal(signal.SIGHUP)
        wait_log(gw, "still running on the previous configuration")
        n = sub.count(f"{PREFIX}/probe")
        assert sub.wait_for(lambda s: s.count(f"{PREFIX}/probe") >= n + 5), gw.output()
        assert gw.proc is not None and gw.proc.poll() is None
    finally:
        code = gw.stop()
        sub.stop()
    out = gw.output()
    assert code == 0, out
    # Each problem is logged with its file and line, like `edge-gateway check`.
    assert f"reload: {cfg}:" in out
    assert "devices[1].address" in out or "devices.1.address" in out, out
    assert "intervall" in out
    # Still the old device settings: the old value, and no restart.
    assert {m.json()["temperature_c"] for m in sub.on(f"{PREFIX}/probe")} == {-12.25}
    assert "restarted" not in out
    assert "Traceback" not in out


def test_mqtt_change_needs_a_restart_and_keeps_running_values(tmp_path: Path,
                                                              broker: Mosquitto) -> None:
    path = write_config(tmp_path / "gw.yaml", config_text(tmp_path, broker.port, AIR + PROBE_OLD))
    gw = Gateway(load_config(path))
    gw.start()
    try:
        air_reader = gw.readers["air"]
        probe_reader = gw.readers["probe"]
        path.write_text(config_text(tmp_path, broker.port, AIR + PROBE_NEW,
                                    mqtt_extra="  keepalive: 30s\n  qos: 0"))
        assert reload_gateway(gw).applied is True
        # The untouched reader is the same running thread; the changed one is new.
        assert gw.readers["air"] is air_reader and air_reader.alive
        assert gw.readers["probe"] is not probe_reader and not probe_reader.alive
        assert gw.readers["probe"].alive
        # mqtt needs a restart: the running values stay in effect (and in gw.cfg).
        assert gw.cfg.mqtt.keepalive == 60.0 and gw.cfg.mqtt.qos == 1
        assert gw.cfg.device("probe").sim == {"values": {"temperature_c": 30.5}}
        # Reloading the same file again: mqtt still differs, devices do not.
        assert reload_gateway(gw).applied is False
        assert gw.readers["probe"].alive
    finally:
        gw.shutdown()


def test_plan_compares_device_configs_by_value(tmp_path: Path) -> None:
    a = load_config(write_config(tmp_path / "a.yaml", config_text(tmp_path, 1883, AIR + PROBE_OLD
                                                                  + GONE)))
    b = load_config(write_config(tmp_path / "b.yaml", config_text(tmp_path, 1883, AIR + PROBE_NEW
                                                                  + FRESH)))
    plan = plan_devices(a.devices, b.devices)
    assert [d.name for d in plan.added] == ["fresh"]
    assert [d.name for d in plan.changed] == ["probe"]
    assert [d.name for d in plan.removed] == ["gone"]
    assert plan.unchanged == ["air"]
    same = plan_devices(a.devices, load_config(a.source).devices)
    assert not (same.added or same.changed or same.removed)


def gps(lat: float) -> str:
    return f"""
  - name: gps
    driver: nmea
    port: /dev/ttyUSB0
    baudrate: 9600
    sim: {{rate_hz: 10, lat: {lat}, lon: 13.405, radius_m: 1, speed_kn: 0}}
"""


def test_changed_serial_device_gets_a_new_simulated_port(tmp_path: Path,
                                                         broker: Mosquitto) -> None:
    path = write_config(tmp_path / "gw.yaml", config_text(tmp_path, broker.port, AIR + gps(52.52)))
    sub = Subscriber(broker.port, f"{PREFIX}/gps").start()
    gw = Gateway(load_config(path))
    gw.start()
    try:
        assert sub.wait_for(lambda s: s.count(f"{PREFIX}/gps") >= 5)
        assert gw.sim is not None
        old_pty = gw.sim.extras["gps"]
        path.write_text(config_text(tmp_path, broker.port, AIR + gps(48.0)))
        assert reload_gateway(gw).applied is True
        assert gw.sim.extras["gps"] is not old_pty
        assert sub.wait_for(lambda s: len([
            m for m in s.on(f"{PREFIX}/gps") if abs(m.json()["latitude_deg"] - 48.0) < 0.01
        ]) >= 5, timeout=30)
    finally:
        gw.shutdown()
        sub.stop()
    fixes = [m.json() for m in sub.on(f"{PREFIX}/gps")]
    assert [f["seq"] for f in fixes] == list(range(1, len(fixes) + 1))
    lats = [round(f["latitude_deg"]) for f in fixes]
    switch = lats.index(48)
    assert set(lats[:switch]) == {53} and set(lats[switch:]) == {48}
