"""End to end: simulated GPS, line device and Modbus meter on real ptys -> gateway -> Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import GatewayProcess, Mosquitto, Subscriber, sim_header, write_config


def config(tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path / "gw.yaml", f"""
{sim_header("e2e-serial", port, tmp_path)}devices:
  - name: gps
    driver: nmea
    port: /dev/serial/by-id/usb-u-blox_GNSS-if00
    baudrate: 9600
    sim: {{rate_hz: 5, lat: 52.52, lon: 13.405, radius_m: 50, speed_kn: 4, talker: GN,
           bad_checksum_every: 4, garbage_every: 3}}
  - name: mcu
    driver: lines
    port: /dev/ttyACM0
    baudrate: 115200
    format: csv
    fields: [{{name: temperature, unit: c}}, {{name: soil, unit: pct}}, {{name: pump, type: bool}}]
    sim: {{rate_hz: 5, values: {{temperature: 19.75, soil: 33.5, pump: true}}, bad_every: 3}}
  - name: meter
    driver: modbus_rtu
    port: /dev/ttyUSB1
    baudrate: 19200
    slave: 3
    interval: 200ms
    timeout: 500ms
    registers:
      - {{name: voltage, unit: v, address: 0, scale: 0.1}}
      - {{name: power, unit: w, address: 1, type: float32}}
    sim: {{values: {{voltage_v: 229.8, power_w: 512.25}}}}
""")


def test_serial_devices_publish(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "gateway/e2e-serial/#").start()
    gw = GatewayProcess(config(tmp_path, broker.port), tmp_path / "gw.log").start()
    p = "gateway/e2e-serial"
    try:
        assert sub.wait_for(
            lambda s: s.count(f"{p}/gps") >= 5 and s.count(f"{p}/mcu") >= 5
            and s.count(f"{p}/meter") >= 5,
            timeout=60,
        ), gw.output()
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()
    assert "Traceback" not in gw.output()

    gps = [m.json() for m in sub.on(f"{p}/gps")]
    assert [g["seq"] for g in gps] == list(range(1, len(gps) + 1))
    for g in gps:
        # Corrupted sentences were dropped: every position is on the 50 m track.
        assert g["latitude_deg"] == pytest.approx(52.52, abs=0.001)
        assert g["longitude_deg"] == pytest.approx(13.405, abs=0.001)
    assert any({"satellites", "altitude_m", "speed_kn", "course_deg"} <= set(g) for g in gps)

    mcu = [m.json() for m in sub.on(f"{p}/mcu")]
    for m in mcu:
        assert {k: m[k] for k in m if k not in ("seq", "ts")} == {
            "temperature_c": 19.75, "soil_pct": 33.5, "pump": True}

    meter = [m.json() for m in sub.on(f"{p}/meter")]
    for m in meter:
        assert m["voltage_v"] == pytest.approx(229.8)
        assert m["power_w"] == 512.25
