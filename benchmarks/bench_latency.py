"""Latency: a reading's timestamp -> its arrival at a subscriber, at 100 and 500 readings/s.

- gateway: 5 simulated TMP102s polled every 50 ms (100 readings/s) and every 10 ms
  (500 readings/s) through the disk spool (durability=disk, sync=full: an fsync per
  commit; group commit: an idle spooler commits at once) -> paho -> Mosquitto.
- baseline: raw paho-mqtt QoS 1 publishes at the same rate to the same broker,
  each carrying its send time (benchmarks/raw_paho_publisher.py with the rate).

Both are received by the same C subscriber (mosquitto_sub, flushing per message)
whose output is timestamped on arrival in this process. Payload timestamps have
millisecond resolution (rounded), so each latency is +-0.5 ms.
"""

from __future__ import annotations

import calendar
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    PY,
    REPO,
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

DEVICES = 5
INTERVALS_MS = (50, 10)  # 100 and 500 readings/s
WINDOW = 8.0
RESOLUTION_MS = 1.0  # payload ts has milliseconds
TS = re.compile(rb'"ts":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z"')


def parse_ts(line: bytes) -> float | None:
    m = TS.search(line)
    if m is None:
        return None
    secs = calendar.timegm(time.strptime(m.group(1).decode(), "%Y-%m-%dT%H:%M:%S"))
    return secs + int(m.group(2)) / 1000.0


def latencies(lines: list[tuple[float, bytes]], since: float, until: float) -> list[float]:
    """Milliseconds from payload ts to arrival, for readings stamped within [since, until)."""
    out = []
    for arrived, line in lines:
        ts = parse_ts(line)
        if ts is not None and since <= ts < until:
            out.append((arrived - ts) * 1000.0)
    return sorted(out)


def pct(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


def gateway_latency(broker: Mosquitto, d: Path, interval_ms: int) -> tuple[list[float], float]:
    """(sorted latencies in ms, readings/s delivered in the window)."""
    cfg = gateway_config(d / "lat.yaml", broker.port,
                         tmp102_devices(DEVICES, f"{interval_ms}ms"), spool=d / "lat.db",
                         gateway_id="lat")
    sub = CountingSubscriber(broker.port, "gateway/lat/+", keep=True)
    gw = start_gateway(cfg, d / "lat.log")
    try:
        if not sub.wait_count(DEVICES * 1000 // interval_ms, 60):
            raise RuntimeError(f"no readings from the gateway; see {d}/lat.log")
        time.sleep(2.0)  # warm up
        since = time.time()
        time.sleep(WINDOW)
        until = time.time()
        time.sleep(1.0)  # let the last readings of the window arrive
    finally:
        stop(gw)
        sub.stop()
    lat = latencies(sub.lines, since, until)
    return lat, len(lat) / (until - since)


def raw_latency(broker: Mosquitto, rate: int) -> list[float]:
    count = int(rate * (WINDOW + 1))  # as many samples as the gateway window: a stable p99
    sub = CountingSubscriber(broker.port, "bench/raw/#", keep=True)
    try:
        p = subprocess.run([PY, str(REPO / "benchmarks/raw_paho_publisher.py"), str(broker.port),
                            str(count), str(DEVICES), str(rate)], capture_output=True, cwd=REPO,
                           timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"raw publisher failed: {p.stderr.decode()[-2000:]}")
        sub.wait_count(count, 30)
    finally:
        sub.stop()
    stamped = [(arrived, ts) for arrived, line in sub.lines if (ts := parse_ts(line)) is not None]
    if not stamped:
        raise RuntimeError("no raw paho messages arrived")
    first = min(ts for _, ts in stamped)
    # Skip the first second (interpreter and connection warm-up), like the gateway's warm-up.
    return sorted((arrived - ts) * 1000.0 for arrived, ts in stamped if ts >= first + 1.0)


def run() -> list[Result]:
    d = workdir("latency")
    broker = Mosquitto(d / "broker")
    broker.start()
    results = []
    try:
        for interval_ms in INTERVALS_MS:
            rate = DEVICES * 1000 // interval_ms
            raw = raw_latency(broker, rate)
            gw, got = gateway_latency(broker, d, interval_ms)
            for f in d.glob("lat.db*"):
                f.unlink()
            results += _rows(rate, gw, got, raw)
    finally:
        broker.stop()
    shutil.rmtree(d, ignore_errors=True)  # kept on failure: the logs are named in the error
    return results


def _rows(rate: int, gw: list[float], got: float, raw: list[float]) -> list[Result]:
    print(f"bench_latency @ {rate}/s: gateway n={len(gw)} p50 {pct(gw, 50):.2f} "
          f"p99 {pct(gw, 99):.2f} max {gw[-1] if gw else float('nan'):.2f} ms; raw paho "
          f"n={len(raw)} p50 {pct(raw, 50):.2f} p99 {pct(raw, 99):.2f} ms")
    p50, p99, raw50, raw99 = pct(gw, 50), pct(gw, 99), pct(raw, 50), pct(raw, 99)
    # Raw paho on loopback is below the payload's 1 ms resolution: the baseline is
    # floored at 1 ms (the ratio then reads "in units of the clock's resolution").
    base = f"raw paho QoS1 (>= {RESOLUTION_MS:g} ms)"
    return [
        Result(f"latency p50 @ {rate}/s (disk spool)", p50, "ms", max(raw50, RESOLUTION_MS), base,
               "p50 <= 2 ms", p50 <= 2.0, f"{got:.0f} readings/s delivered in the window; "
               f"raw paho p50 {raw50:.2f} ms as measured"),
        Result(f"latency p99 @ {rate}/s (disk spool)", p99, "ms", max(raw99, RESOLUTION_MS), base,
               "p99 <= 5 ms", p99 <= 5.0,
               f"sync=full: an fsync per commit; raw paho p99 {raw99:.2f} ms as measured"),
    ]


if __name__ == "__main__":
    print_results(run())
