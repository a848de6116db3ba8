"""Kernel-driven sensors end to end: simulated sysfs and GPIO lines -> gateway process -> real broker."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support import GatewayProcess, Mosquitto, Subscriber, write_config

DEVICES = """
devices:
  - {name: probes, driver: ds18b20, interval: 200ms, sensors: {soil: 28-0316a2795bff, water: 28-0416a27a1cff}}
  - {name: dht, driver: iio, chip: dht11, interval: 200ms, retry_delay: 10ms, sim: {faults: {eio_rate: 0.3}}}
  - {name: cpu, driver: hwmon, chip: cpu_thermal, interval: 200ms}
  - {name: pi, driver: pi_health, interval: 200ms, sim: {faults: {under_voltage: true}}}
  - {name: door, driver: gpio_contact, line: 17, interval: 1s, debounce: 5ms, sim: {rate_hz: 5, bounce: 4}}
"""


def _config(tmp_path: Path, port: int, rain: str) -> Path:
    return write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: kern, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {port}}}
buffer: {{path: {tmp_path}/spool.db}}
{DEVICES}
  - {{name: rain, driver: pulse_counter, line: 27, interval: 200ms, debounce: 2ms, per_pulse: 0.2794,
      amount_key: rain_mm, sim: {rain}}}
""")


def test_kernel_sensors_reach_the_broker(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = _config(tmp_path, broker.port, "{rate_hz: 50, bounce: 3, presses: 40}")
    sub = Subscriber(broker.port, "gateway/kern/#").start()
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        def latest(dev: str) -> dict[str, object]:
            got = sub.on(f"gateway/kern/{dev}")
            return dict(got[-1].json()) if got else {}

        assert sub.wait_for(lambda s: all(latest(d) for d in ("probes", "dht", "cpu", "pi", "door"))
                            and latest("rain").get("pulses_total") == 40, timeout=90), gw.output()
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()
    probes = latest("probes")
    assert set(probes) >= {"soil_temperature_c", "water_temperature_c"}
    assert 10 < float(probes["soil_temperature_c"]) < 30  # type: ignore[arg-type]
    dht = latest("dht")
    assert set(dht) >= {"temperature_c", "humidity_pct"}
    assert "temperature_c" in latest("cpu")
    pi = latest("pi")
    assert pi["under_voltage"] is True and pi["under_voltage_since_boot"] is True
    assert pi["freq_capped"] is False and "soc_temperature_c" in pi and "disk_free_mb" in pi
    assert isinstance(latest("door")["closed"], bool)
    # Under-voltage warned once, not at every poll; the DHT's EIO retried, not logged as failing.
    out = gw.output()
    assert out.count("UNDER-VOLTAGE") == 1, out
    assert "dht: failing" not in out
    rain = [m.json() for m in sub.on("gateway/kern/rain")]
    assert sum(r["pulses"] for r in rain) == 40


def test_pulse_total_survives_restart_and_sigkill(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "gateway/kern/rain").start()

    def totals() -> list[int]:
        return [int(m.json()["pulses_total"]) for m in sub.on("gateway/kern/rain")]

    try:
        # Run 1: 30 pulses, then a graceful stop.
        cfg = _config(tmp_path, broker.port, "{rate_hz: 50, bounce: 3, presses: 30}")
        gw = GatewayProcess(cfg, tmp_path / "gw1.log").start()
        try:
            assert sub.wait_for(lambda s: 30 in totals(), timeout=60), gw.output()
        finally:
            assert gw.stop() == 0, gw.output()
        # Run 2: 20 more, then SIGKILL.
        cfg = _config(tmp_path, broker.port, "{rate_hz: 50, bounce: 3, presses: 20}")
        gw = GatewayProcess(cfg, tmp_path / "gw2.log").start()
        assert sub.wait_for(lambda s: 50 in totals(), timeout=60), gw.output()
        gw.signal(signal.SIGKILL)
        gw.wait(30)
        # Run 3: 10 more after the kill: the total goes on from 50.
        cfg = _config(tmp_path, broker.port, "{rate_hz: 50, bounce: 3, presses: 10}")
        gw = GatewayProcess(cfg, tmp_path / "gw3.log").start()
        try:
            assert sub.wait_for(lambda s: 60 in totals(), timeout=60), gw.output()
        finally:
            assert gw.stop() == 0, gw.output()
    finally:
        sub.stop()
    seen = totals()
    assert seen == sorted(seen), seen  # never reset, never back
    assert max(seen) == 60
