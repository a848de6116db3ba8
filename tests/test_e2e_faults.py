"""End to end with injected faults: a real gateway process, simulated chips, a real Mosquitto.

Healthy devices publish without gaps while a device that is absent at start and
another that has an EIO burst fail, are reported on the retained health topic,
and recover by themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import GatewayProcess, Mosquitto, Subscriber, retained, sim_header, write_config

PREFIX = "gateway/faults-e2e"


def config(tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path / "gw.yaml", f"""
{sim_header("faults-e2e", port, tmp_path, "  health_interval: 1s")}devices:
  - name: air
    driver: bme280
    address: 0x76
    interval: 100ms
    sim:
      values: {{temperature_c: 22.0, humidity_pct: 40.0, pressure_hpa: 1000.0}}
  - name: leaf
    driver: sht3x
    address: 0x44
    interval: 100ms
  - name: adc
    driver: ads1115
    address: 0x49
    interval: 150ms
    channels: [0, 1]
  - name: late
    driver: bh1750
    address: 0x23
    interval: 100ms
    sim:
      faults: {{absent_for: 8s}}
      values: {{illuminance_lx: 250.0}}
  - name: flaky
    driver: tmp102
    address: 0x48
    interval: 100ms
    sim:
      faults: {{eio_burst: 8}}
""")


def health_states(sub: Subscriber, device: str) -> list[str]:
    out = []
    for m in sub.on(f"{PREFIX}/health"):
        dev = json.loads(m.payload)["devices"].get(device)
        if dev is not None:
            out.append(dev["state"])
    return out


def test_faulty_devices_recover_and_healthy_ones_have_no_gaps(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, f"{PREFIX}/#").start()
    gw = GatewayProcess(config(tmp_path, broker.port), tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: "failing" in health_states(s, "late"), timeout=60), gw.output()
        assert sub.wait_for(
            lambda s: s.count(f"{PREFIX}/late") >= 5 and s.count(f"{PREFIX}/flaky") >= 5
            and s.count(f"{PREFIX}/air") >= 30,
            timeout=90,
        ), gw.output()
        assert sub.wait_for(lambda s: health_states(s, "late")[-1:] == ["ok"], timeout=30)
        health: Any = json.loads(retained(broker.port, f"{PREFIX}/health") or b"{}")
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()

    # Healthy devices: every seq from 1, no gaps, while the others were failing.
    for name in ("air", "leaf", "adc"):
        seqs = [m.json()["seq"] for m in sub.on(f"{PREFIX}/{name}")]
        assert seqs == list(range(1, len(seqs) + 1)), (name, seqs)
    # The faulty devices recovered by themselves and then published without gaps too.
    for name in ("late", "flaky"):
        seqs = [m.json()["seq"] for m in sub.on(f"{PREFIX}/{name}")]
        assert seqs == list(range(1, len(seqs) + 1)), (name, seqs)
    late = sub.on(f"{PREFIX}/late")[0].json()
    assert abs(late["illuminance_lx"] - 250.0) <= 1.0
    assert set(sub.on(f"{PREFIX}/adc")[0].json()) == {"seq", "ts", "ain0_v", "ain1_v"}

    # The retained health topic shows the recovered devices with their error counts.
    devices = health["devices"]
    assert devices["late"]["state"] == "ok" and devices["late"]["errors"] >= 1
    assert devices["late"]["last_error"].startswith("EREMOTEIO")
    assert devices["flaky"]["state"] == "ok" and devices["flaky"]["errors"] == 8
    for name in ("air", "leaf", "adc"):
        assert devices[name]["state"] == "ok" and devices[name]["errors"] == 0
    # State changes went starting/failing -> ok for the late device, and each was logged once.
    states = health_states(sub, "late")
    assert states.index("failing") < len(states) - 1 - states[::-1].index("ok")
    out = gw.output()
    assert out.count("late: failing") == 1, out
    assert out.count("late: recovered") == 1, out
    assert out.count("flaky: failing") == 1 and out.count("flaky: recovered") == 1
    assert "Traceback" not in out
