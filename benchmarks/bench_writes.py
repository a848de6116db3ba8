"""Bytes written to disk per reading: 10 simulated sensors at 1 Hz, broker up and down.

The gateway's `write_bytes` from /proc/PID/io (what reached the block layer: WAL
frames, checkpoints, the seq lease) over a window, divided by the readings taken in
that window, against the payload bytes of one reading (measured from what the
subscriber received) in the same run. One row per durability setting (`sync: full`,
`sync: normal`, `write_delay: 2s` (the SD-card mode), `durability: memory`) with the
broker up, and the same with no broker (every reading then stays in the spool).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    CountingSubscriber,
    Mosquitto,
    Result,
    gateway_config,
    print_results,
    start_gateway,
    stop,
    tmp102_devices,
    workdir,
)

SENSORS = 10
WARMUP = 5.0
WINDOW = 30.0
SETTINGS = {"sync: full": "  sync: full",
            "sync: full, journal: false": "  sync: full\n  journal: false",
            "sync: normal": "  sync: normal",
            "write_delay: 2s": "  write_delay: 2s",
            "durability: memory": "  durability: memory"}


def write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


def measure(d: Path, port: int, extra: str, broker_up: bool) -> tuple[float, float]:
    """(bytes written per reading, mean payload bytes of a reading (broker up; else 0))."""
    for f in d.glob("w.db*"):
        f.unlink()
    cfg = gateway_config(d / "w.yaml", port, tmp102_devices(SENSORS, "1s"), spool=d / "w.db",
                         gateway_id="w", extra=extra)
    sub = CountingSubscriber(port, "gateway/w/+", keep=True) if broker_up else None
    gw = start_gateway(cfg, d / "w.log")
    try:
        time.sleep(WARMUP)
        if sub is not None and not sub.wait_count(SENSORS, 30):
            raise RuntimeError(f"no readings from the gateway; see {d}/w.log")
        b0, t0 = write_bytes(gw.pid), time.monotonic()
        n0 = sub.count if sub is not None else 0
        time.sleep(WINDOW)
        b1, t1 = write_bytes(gw.pid), time.monotonic()
        n1 = sub.count if sub is not None else 0
    finally:
        stop(gw)
        if sub is not None:
            sub.stop()
    readings = (n1 - n0) if broker_up else SENSORS * (t1 - t0)  # polled drift-free at 1 Hz
    payload = 0.0
    if sub is not None:
        # Readings only: the health and status topics match the same wildcard, and one
        # health message (~2 KB with ten devices) would raise the mean by a fifth.
        devices = {f"gateway/w/{d['name']}".encode() for d in tmp102_devices(SENSORS, "1s")}
        sizes = [len(body) for _, line in sub.lines
                 for topic, _, body in [line.partition(b" ")] if topic in devices]
        payload = sum(sizes) / max(1, len(sizes))
    return (b1 - b0) / max(1.0, readings), payload


def run() -> list[Result]:
    d = workdir("writes")
    broker = Mosquitto(d / "broker")
    broker.start()
    results: list[Result] = []
    payload = 0.0
    try:
        up = {}
        for name, extra in SETTINGS.items():
            up[name], p = measure(d, broker.port, extra, broker_up=True)
            payload = max(payload, p)
        down = {name: measure(d, broker.port + 1, extra, broker_up=False)[0]
                for name, extra in SETTINGS.items()}
    finally:
        broker.stop()
    shutil.rmtree(d, ignore_errors=True)
    for state, table in (("broker up", up), ("broker down", down)):
        for name, per in table.items():
            goal = ""
            if state == "broker up" and name == "sync: full":
                goal = "<= 8x payload"
            elif state == "broker up" and name.startswith("write_delay"):
                goal = "<= 0.5x payload"  # ~0: only what is not acknowledged within 2 s
            results.append(Result(
                f"disk writes per reading, {name}, {state}", per, "B", payload,
                "payload bytes of one reading", goal,
                (per <= (8 if "8x" in goal else 0.5) * payload) if goal else None,
                f"{SENSORS} sensors x 1 Hz, /proc/PID/io write_bytes over {WINDOW:.0f} s"))
    return results


if __name__ == "__main__":
    print_results(run())
