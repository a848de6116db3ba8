"""End to end: the daemon as a subprocess, the inference worker, a real broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import GatewayProcess, Mosquitto, Subscriber, sim_header, write_config

REPO = Path(__file__).resolve().parent.parent
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LABELS = {"empty", "circle", "square", "triangle"}


def config(tmp_path: Path, port: int, model: Path, extra: str = "",
           labels: Path = REPO / "models" / "labels.txt") -> Path:
    return write_config(tmp_path / "gw.yaml", f"""
{sim_header("e2e-inf", port, tmp_path)}devices:
  - name: air
    driver: bme280
    address: 0x76
    interval: 100ms
inference:
  enabled: true
  name: cam
  model: {model}
  labels: {labels}
  camera: sim
  fps: 5
  publish_interval: 0s
  heartbeat_timeout: 5s
{extra}""")


def labels_seen(sub: Subscriber) -> set[str]:
    return {x["label"] for m in sub.on("gateway/e2e-inf/cam") for x in m.json()["labels"]}


def worker_pids(gateway_pid: int) -> list[int]:
    """Children of the gateway that run the inference worker (not the resource tracker)."""
    kids: list[int] = []
    for task in Path(f"/proc/{gateway_pid}/task").iterdir():
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    found = []
    for pid in kids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            found.append(pid)
    return found


def test_results_arrive_with_the_contract_payload(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "gateway/e2e-inf/#").start()
    model = REPO / "models" / "shapes_int8.tflite"
    gw = GatewayProcess(config(tmp_path, broker.port, model), tmp_path / "gw.log").start()
    try:
        # The simulated scene changes every 5 frames: wait until a second label shows up.
        assert sub.wait_for(lambda s: len(labels_seen(s)) >= 2, timeout=90), gw.output()
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()
    results = [m.json() for m in sub.on("gateway/e2e-inf/cam")]
    assert [r["seq"] for r in results] == list(range(1, len(results) + 1))
    for r in results:
        assert list(r)[:2] == ["seq", "ts"] and TS.match(r["ts"])
        assert set(r) == {"seq", "ts", "inference_ms", "labels"}
        assert r["inference_ms"] >= 0
        assert all(x["label"] in LABELS and 0.5 <= x["score"] <= 1 for x in r["labels"])
    assert sub.count("gateway/e2e-inf/air") > 0
    assert "Traceback" not in gw.output()


def test_detections_arrive_with_boxes(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "gateway/e2e-inf/cam").start()
    cfg = config(tmp_path, broker.port, REPO / "models" / "shapes_detect.tflite",
                 labels=REPO / "models" / "detect_labels.txt")
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(
            lambda s: any(m.json()["detections"] for m in s.on("gateway/e2e-inf/cam")),
            timeout=90), gw.output()
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()
    results = [m.json() for m in sub.on("gateway/e2e-inf/cam")]
    for r in results:
        assert set(r) == {"seq", "ts", "inference_ms", "detections"}
        for d in r["detections"]:
            assert set(d) == {"label", "score", "box"}
            assert d["label"] in {"circle", "square", "triangle"} and 0.5 <= d["score"] <= 1
            ymin, xmin, ymax, xmax = d["box"]
            assert 0 <= ymin < ymax <= 1 and 0 <= xmin < xmax <= 1


def test_sigkill_worker_inside_the_daemon(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "gateway/e2e-inf/#").start()
    model = REPO / "models" / "shapes_int8.tflite"
    gw = GatewayProcess(config(tmp_path, broker.port, model), tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count("gateway/e2e-inf/cam") >= 3, timeout=90), \
            gw.output()
        assert gw.proc is not None
        pids = worker_pids(gw.proc.pid)
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        t_kill = time.time()
        air_before = sub.count("gateway/e2e-inf/air")
        assert sub.wait_for(
            lambda s: any(m.at > t_kill + 0.5 for m in s.on("gateway/e2e-inf/cam")),
            timeout=90), gw.output()
        assert sub.count("gateway/e2e-inf/air") > air_before  # sensors carried on
        new = worker_pids(gw.proc.pid)
        assert new and new[0] != pids[0]
        assert gw.proc.poll() is None
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()
    assert "worker killed by SIGKILL" in gw.output()


def test_corrupt_model_leaves_sensors_running(tmp_path: Path, broker: Mosquitto) -> None:
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"TFL3" + os.urandom(1000))
    sub = Subscriber(broker.port, "gateway/e2e-inf/#").start()
    gw = GatewayProcess(config(tmp_path, broker.port, bad), tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count("gateway/e2e-inf/air") >= 30, timeout=90), \
            gw.output()
        assert sub.count("gateway/e2e-inf/cam") == 0
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()
    out = gw.output()
    assert "cannot load model" in out and "broken.tflite" in out, out
    assert "Traceback" not in out


def test_worker_exits_when_the_daemon_is_killed(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "gateway/e2e-inf/cam").start()
    model = REPO / "models" / "shapes_int8.tflite"
    gw = GatewayProcess(config(tmp_path, broker.port, model), tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count("gateway/e2e-inf/cam") >= 2, timeout=90), \
            gw.output()
        assert gw.proc is not None
        pids = worker_pids(gw.proc.pid)
        assert len(pids) == 1
        gw.kill()  # SIGKILL: no chance to stop the worker
        # The orphan sees its pipe break and exits by itself (no leaked CPU-hungry process).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pids[0]}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{pids[0]}").exists()
    finally:
        gw.kill()
        sub.stop()


def test_check_rejects_a_model_that_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00" * 300)
    cfg = config(tmp_path, 1883, bad)
    out = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(cfg)],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert re.match(rf"^{re.escape(str(cfg))}:\d+: inference\.model: .*not a usable TFLite model",
                    lines[0]), lines[0]
    good = config(tmp_path, 1883, REPO / "models" / "shapes_int8.tflite")
    ok = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(good)],
                        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert ok.returncode == 0, ok.stderr
