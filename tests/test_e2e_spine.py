"""End to end: simulated BME280 + TMP102 -> real Mosquitto -> a subscriber, CLI as a subprocess."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from tests.support import GatewayProcess, Mosquitto, Subscriber, retained, sim_header, write_config

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def config(tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path / "gw.yaml", f"""
{sim_header("e2e-test", port, tmp_path)}devices:
  - name: air
    driver: bme280
    address: 0x76
    interval: 100ms
    sim:
      values: {{temperature_c: 23.5, humidity_pct: 41.0, pressure_hpa: 1009.1}}
  - name: probe
    driver: tmp102
    address: 0x48
    interval: 150ms
    sim:
      values: {{temperature_c: -12.25}}
""")


def test_readings_arrive_with_contract_payloads(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "gateway/e2e-test/#").start()
    gw = GatewayProcess(config(tmp_path, broker.port), tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(
            lambda s: s.count("gateway/e2e-test/air") >= 10 and s.count("gateway/e2e-test/probe") >= 8
        ), gw.output()
        assert retained(broker.port, "gateway/e2e-test/status") == b"online"
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()

    air = [m.json() for m in sub.on("gateway/e2e-test/air")]
    probe = [m.json() for m in sub.on("gateway/e2e-test/probe")]
    # seq counts up by one per device, from 1.
    assert [a["seq"] for a in air] == list(range(1, len(air) + 1))
    assert [p["seq"] for p in probe] == list(range(1, len(probe) + 1))
    first = air[0]
    assert list(first)[:2] == ["seq", "ts"]
    assert TS.match(first["ts"])
    assert set(first) == {"seq", "ts", "temperature_c", "humidity_pct", "pressure_hpa"}
    # The simulator encodes pinned values; the driver's decode recovers them.
    assert abs(first["temperature_c"] - 23.5) <= 0.01
    assert abs(first["humidity_pct"] - 41.0) <= 0.01
    assert abs(first["pressure_hpa"] - 1009.1) <= 0.01
    assert set(probe[0]) == {"seq", "ts", "temperature_c"}
    assert probe[0]["temperature_c"] == -12.25
    # Clean stop: retained offline status.
    assert retained(broker.port, "gateway/e2e-test/status") == b"offline"
    assert "Traceback" not in gw.output()


def test_sigint_is_a_clean_stop_too(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "gateway/e2e-test/air").start()
    gw = GatewayProcess(config(tmp_path, broker.port), tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count("gateway/e2e-test/air") >= 3), gw.output()
        gw.signal(signal.SIGINT)
        assert gw.wait(30) == 0
    finally:
        gw.kill()
        sub.stop()


def test_seq_continues_across_restart(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = config(tmp_path, broker.port)
    sub = Subscriber(broker.port, "gateway/e2e-test/air").start()
    try:
        for _ in range(2):
            gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
            try:
                n = sub.count("gateway/e2e-test/air")
                assert sub.wait_for(lambda s, n=n: s.count("gateway/e2e-test/air") >= n + 5)
            finally:
                assert gw.stop() == 0
        seqs = [m.json()["seq"] for m in sub.on("gateway/e2e-test/air")]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
    finally:
        sub.stop()
