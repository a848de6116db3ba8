"""Fleet: N gateway processes against one Mosquitto on this machine.

Each gateway has 10 simulated TMP102s at 100 ms (100 readings/s) and its own
id, so its own topic prefix (gateway/<id>) and client id (edge-gateway-<id>).
For N = 1, 5, 20 it measures, over a steady window:
- per-gateway CPU % of a core and RSS (mean over the fleet): should stay flat
  as N grows (ratio against N = 1 measured in the same run);
- delivered messages/s at one C subscriber on gateway/+/+ against what the
  fleet accepted into its spools in the same window (ratio 1.0 = delivery keeps
  up), and accepted against nominal (below: sensor polls skipped on a starved CPU);
- the broker's CPU %; Mosquitto is single-threaded, so messages/s divided by
  its share of one core estimates where the broker itself becomes the limit.
On a 2-core machine 20 Python daemons plus the broker share two cores, so at
high N the machine (not the broker) is usually what runs out first: see the
notes for total CPU.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    CountingSubscriber,
    Mosquitto,
    Result,
    cpu_seconds,
    gateway_config,
    print_results,
    rss_bytes,
    start_gateway,
    stop,
    tmp102_devices,
    workdir,
)

FLEET_SIZES = (1, 5, 20)
SENSORS = 10
INTERVAL_MS = 100
WINDOW = 6.0
MiB = 1024 * 1024


@dataclass
class FleetRun:
    n: int
    cpu_pct_per_gw: float
    rss_mib_per_gw: float
    broker_pct: float
    delivered: float
    generated: float
    nominal: float


def fleet(broker: Mosquitto, d: Path, n: int) -> FleetRun:
    assert broker.proc is not None
    sub = CountingSubscriber(broker.port, "gateway/+/+")
    gws: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(n):
            gid = f"fleet{n}-{i}"
            cfg = gateway_config(d / f"{gid}.yaml", broker.port,
                                 tmp102_devices(SENSORS, f"{INTERVAL_MS}ms"),
                                 spool=d / f"{gid}.db", gateway_id=gid)
            gws.append(start_gateway(cfg, d / f"{gid}.log"))
        per_s = SENSORS * 1000 / INTERVAL_MS
        # Every gateway up and delivering: about a second's worth from each.
        if not sub.wait_count(int(n * per_s), 60 + 3 * n):
            raise RuntimeError(f"fleet of {n} did not start delivering; logs in {d}")
        time.sleep(2.0)  # warm up
        spools = [d / f"fleet{n}-{i}.db" for i in range(n)]
        a0 = sum(accepted(s) for s in spools)
        c0, t0 = sub.count, time.monotonic()
        g0 = [cpu_seconds(p.pid) for p in gws]
        b0 = cpu_seconds(broker.proc.pid)
        time.sleep(WINDOW)
        c1, t1 = sub.count, time.monotonic()
        g1 = [cpu_seconds(p.pid) for p in gws]
        b1 = cpu_seconds(broker.proc.pid)
        a1 = sum(accepted(s) for s in spools)
        rss = [rss_bytes(p.pid) for p in gws]
        dead = [p.pid for p in gws if p.poll() is not None]
        if dead:
            raise RuntimeError(f"gateways exited during the window: {dead}; logs in {d}")
    finally:
        for p in gws:  # all at once, so the fleet stops in parallel
            if p.poll() is None:
                p.terminate()
        for p in gws:
            stop(p)
        sub.stop()
    span = t1 - t0
    return FleetRun(n, sum(b - a for a, b in zip(g0, g1, strict=True)) / n / span * 100,
                    sum(rss) / n / MiB, (b1 - b0) / span * 100, (c1 - c0) / span,
                    (a1 - a0) / span, n * per_s)


def accepted(spool: Path) -> int:
    """Readings a gateway has accepted so far: the sum of its per-device sequence numbers."""
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT COALESCE(SUM(seq), 0) FROM seqs").fetchone()[0])
    finally:
        db.close()


def measure() -> list[FleetRun]:
    d = workdir("fleet")
    broker = Mosquitto(d / "broker")
    broker.start()
    try:
        runs = [fleet(broker, d, n) for n in FLEET_SIZES]
    finally:
        broker.stop()
    shutil.rmtree(d, ignore_errors=True)  # kept on failure: the logs are named in the error
    return runs


def run() -> list[Result]:
    runs = measure()
    one = runs[0]
    results: list[Result] = []
    for r in runs:
        total_cpu = r.cpu_pct_per_gw * r.n + r.broker_pct
        ceiling = r.delivered / (r.broker_pct / 100) if r.broker_pct > 0 else float("inf")
        print(f"bench_fleet: N={r.n:2d} per-gateway CPU {r.cpu_pct_per_gw:5.2f} % RSS "
              f"{r.rss_mib_per_gw:5.1f} MiB; broker CPU {r.broker_pct:5.2f} %; delivered "
              f"{r.delivered:7.0f}/{r.generated:.0f} accepted ({r.nominal:.0f} nominal) msg/s; "
              f"all processes {total_cpu:.0f} % "
              f"of 200 %; broker ceiling ~{ceiling:,.0f} msg/s "
              "(extrapolated from its CPU share)")
        results.append(Result(
            f"fleet N={r.n}: CPU per gateway", r.cpu_pct_per_gw, "% core", one.cpu_pct_per_gw,
            "same, N=1", "flat (ratio ~1)" if r.n > 1 else "", None,
            f"RSS {r.rss_mib_per_gw:.1f} MiB per gateway (N=1: {one.rss_mib_per_gw:.1f}); "
            f"all processes {total_cpu:.0f} % of 2 cores"))
        results.append(Result(
            f"fleet N={r.n}: delivered msg/s", r.delivered, "msg/s", r.generated,
            "accepted by the fleet", "ratio ~1 (keeps up)", r.delivered >= 0.95 * r.generated,
            f"sensors produced {r.generated:.0f} of a nominal {r.nominal:.0f}/s; "
            f"broker CPU {r.broker_pct:.1f} % of one core; " + (
                f"at 100 % it would carry ~{ceiling:,.0f} msg/s "
                f"(~{ceiling / (SENSORS * 1000 / INTERVAL_MS):,.0f} such gateways)"
                if r.broker_pct >= 1.0 else "too little to extrapolate")))
    return results


if __name__ == "__main__":
    print_results(run())
