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


class _Run:
    """One setting's gateway, started, with its subscriber (broker up)."""

    def __init__(self, d: Path, port: int, extra: str, broker_up: bool, gid: str) -> None:
        self.d, self.gid = d, gid
        d.mkdir()
        cfg = gateway_config(d / "w.yaml", port, tmp102_devices(SENSORS, "1s"),
                             spool=d / "w.db", gateway_id=gid, extra=extra)
        self.sub = CountingSubscriber(port, f"gateway/{gid}/+", keep=True) if broker_up else None
        self.gw = start_gateway(cfg, d / "w.log")
        self.b0 = self.n0 = self.b1 = self.n1 = 0
        self.t0 = self.t1 = 0.0

    def begin(self) -> None:
        if self.sub is not None and not self.sub.wait_count(SENSORS, 30):
            raise RuntimeError(f"no readings from the gateway; see {self.d}/w.log")
        self.b0, self.t0 = write_bytes(self.gw.pid), time.monotonic()
        self.n0 = self.sub.count if self.sub is not None else 0

    def end(self) -> None:
        self.b1, self.t1 = write_bytes(self.gw.pid), time.monotonic()
        self.n1 = self.sub.count if self.sub is not None else 0

    def stop(self) -> None:
        stop(self.gw)
        if self.sub is not None:
            self.sub.stop()

    def per_reading(self) -> tuple[float, float]:
        """(bytes written per reading, mean payload bytes of a reading (broker up; else 0))."""
        written = self.b1 - self.b0
        if self.sub is None:  # polled drift-free at 1 Hz
            return written / max(1.0, SENSORS * (self.t1 - self.t0)), 0.0
        # Readings only: the health and status topics match the same wildcard, and one
        # health message (~2 KB with ten devices) would raise the mean by a fifth.
        devices = {f"gateway/{self.gid}/{dev['name']}".encode()
                   for dev in tmp102_devices(SENSORS, "1s")}
        sizes = [len(body) for _, line in self.sub.lines
                 for topic, _, body in [line.partition(b" ")] if topic in devices]
        return written / max(1.0, float(self.n1 - self.n0)), sum(sizes) / max(1, len(sizes))


def measure(d: Path, port: int, broker_up: bool) -> dict[str, tuple[float, float]]:
    """Every setting at once, each its own gateway and spool: /proc/PID/io counts each
    process's own writes (a page is charged to the process that dirtied it), and ten
    readings a second each leave the machine idle, so they do not disturb each other.
    One window for all instead of one each: `make bench` 4.5 minutes shorter."""
    runs: dict[str, _Run] = {}
    try:
        for i, (name, extra) in enumerate(SETTINGS.items()):
            runs[name] = _Run(d / f"{'up' if broker_up else 'down'}{i}", port, extra,
                              broker_up, f"w{i}")
        time.sleep(WARMUP)
        for r in runs.values():
            r.begin()
        time.sleep(WINDOW)
        for r in runs.values():
            r.end()
    finally:
        for r in runs.values():
            r.stop()
    return {name: r.per_reading() for name, r in runs.items()}


def run() -> list[Result]:
    d = workdir("writes")
    broker = Mosquitto(d / "broker")
    broker.start()
    results: list[Result] = []
    try:
        measured = measure(d, broker.port, broker_up=True)
        up = {name: per for name, (per, _) in measured.items()}
        payload = max(p for _, p in measured.values())
        down = {name: per for name, (per, _) in
                measure(d, broker.port + 1, broker_up=False).items()}
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
