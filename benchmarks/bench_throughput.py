"""Throughput: delivered readings/s through the whole gateway vs raw paho-mqtt QoS 1.

- raw paho: one publisher process, QoS 1, MQTT 5, gateway-shaped payloads, as fast as it
  goes, timed from its first publish to its last PUBACK (the ceiling on this machine).
- gateway: simulated sensors -> readers -> SQLite spool (disk, sync=full) -> paho ->
  Mosquitto -> a C subscriber, with sensors producing faster than delivery can go,
  measured over a steady window.
- drain: a 100k-reading backlog in the spool (an outage), delivered after start, timed
  from the first delivery (spool -> paho -> broker at full speed).
CPU per delivered reading counts every process involved (publisher/gateway + broker).
"""

from __future__ import annotations

import os
import sqlite3
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
    cpu_seconds,
    gateway_config,
    print_results,
    start_gateway,
    stop,
    tmp102_devices,
    workdir,
)
from gateway.outbox.spool import NewRow, SqliteSpool
from gateway.reading import encode_payload

RAW_COUNT = 30_000


def raw_paho(broker: Mosquitto) -> tuple[float, float]:
    """(messages/s, CPU µs per message) of raw paho QoS 1 publishing."""
    sub = CountingSubscriber(broker.port, "bench/raw/#")
    b0 = cpu_seconds(broker.proc.pid)  # type: ignore[union-attr]
    p = subprocess.Popen([PY, str(REPO / "benchmarks/raw_paho_publisher.py"), str(broker.port),
                          str(RAW_COUNT), "10", "0", "5"], stdout=subprocess.PIPE, cwd=REPO)
    assert p.stdout is not None
    reported = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    sub.wait_count(RAW_COUNT, 60)
    cpu = usage.ru_utime + usage.ru_stime + cpu_seconds(broker.proc.pid) - b0  # type: ignore[union-attr]
    sub.stop()
    # The publisher times itself from its first publish to its last PUBACK, so
    # interpreter start-up is not counted against the baseline.
    return float(reported.strip()), cpu / RAW_COUNT * 1e6


def gateway_steady(broker: Mosquitto, d: Path, devices: int = 8, window: float = 8.0
                   ) -> tuple[float, float, float]:
    """(delivered/s, CPU µs per reading, generated/s) with sensors outpacing delivery."""
    spool = d / "steady.db"
    cfg = gateway_config(d / "steady.yaml", broker.port, tmp102_devices(devices, "1ms"),
                         spool=spool, gateway_id="bench")
    sub = CountingSubscriber(broker.port, "gateway/bench/+")
    gw = start_gateway(cfg, d / "steady.log")
    try:
        sub.wait_count(2000, 30)
        time.sleep(2.0)  # warm up
        c0, g0, b0, t0 = sub.count, cpu_seconds(gw.pid), cpu_seconds(broker.proc.pid), time.monotonic()  # type: ignore[union-attr]
        a0 = _accepted(spool)
        time.sleep(window)
        c1, g1, b1, t1 = sub.count, cpu_seconds(gw.pid), cpu_seconds(broker.proc.pid), time.monotonic()  # type: ignore[union-attr]
        a1 = _accepted(spool)
    finally:
        stop(gw)
        sub.stop()
    delivered = (c1 - c0) / (t1 - t0)
    return delivered, (g1 - g0 + b1 - b0) / max(c1 - c0, 1) * 1e6, (a1 - a0) / (t1 - t0)


def _accepted(spool: Path) -> int:
    db = sqlite3.connect(spool)
    try:
        return int(db.execute("SELECT COALESCE(SUM(seq), 0) FROM seqs").fetchone()[0])
    finally:
        db.close()


def drain(broker: Mosquitto, d: Path, backlog: int = 100_000) -> float:
    """Readings/s delivered from a `backlog`-reading spool after start."""
    spool_path = d / "drain.db"
    spool = SqliteSpool(spool_path)
    ts = time.time()
    for start in range(0, backlog, 5000):
        rows = [NewRow(f"t{i % 10}", f"gateway/drain/t{i % 10}", i // 10 + 1,
                       encode_payload(i // 10 + 1, ts, {"temperature_c": 21.5}))
                for i in range(start, min(backlog, start + 5000))]
        spool.write(rows, [])
    spool.close()
    cfg = gateway_config(d / "drain.yaml", broker.port, [], spool=spool_path, gateway_id="drain")
    cfg.write_text(cfg.read_text().replace("devices:\n", "devices: []\n"))
    sub = CountingSubscriber(broker.port, "gateway/drain/+")
    gw = start_gateway(cfg, d / "drain.log")
    try:
        sub.wait_count(1, 30)
        t0 = time.monotonic()  # from the first delivery: start-up is not drain time
        ok = sub.wait_count(backlog, 120)
        elapsed = time.monotonic() - t0
    finally:
        stop(gw)
        sub.stop()
    if not ok:
        raise RuntimeError(f"drain incomplete: {sub.count}/{backlog}; see {d}/drain.log")
    return (backlog - 1) / elapsed


def run() -> list[Result]:
    d = workdir("throughput")
    broker = Mosquitto(d / "broker")
    broker.start()
    try:
        raw_rate, raw_cpu = raw_paho(broker)
        gw_rate, gw_cpu, generated = gateway_steady(broker, d)
        drain_rate = drain(broker, d)
    finally:
        broker.stop()
    txn_rate, reading_rate = transactions_per_second()
    return [
        Result("throughput: delivered readings/s", gw_rate, "msg/s", raw_rate, "raw paho QoS1",
               "ratio >= 0.8", gw_rate / raw_rate >= 0.8,
               f"8 sensors at 1 ms offered 8000/s, {generated:.0f}/s accepted; "
               "spool=disk sync=full; MQTT 5 both"),
        Result("CPU per delivered reading", gw_cpu, "µs", raw_cpu, "raw paho QoS1",
               "(all processes)", None),
        Result("backlog drain (100k outage)", drain_rate, "msg/s", raw_rate, "raw paho QoS1",
               "", None),
        Result("SQLite commits/s, 10 sensors at 1 Hz", txn_rate, "txn/s", reading_rate,
               "readings/s", "<= a few per second", txn_rate <= 3.0,
               "inserts and acks share commits; polls aligned to the interval grid"),
    ]



def transactions_per_second(seconds: float = 10.0) -> tuple[float, float]:
    """(SQLite commits/s, readings/s) with 10 sensors at 1 Hz, in process, broker up."""
    import threading

    from gateway.config import load_config
    from gateway.daemon import Gateway

    d = workdir("txn")
    broker = Mosquitto(d / "broker")
    broker.start()
    try:
        cfg_path = gateway_config(d / "txn.yaml", broker.port, tmp102_devices(10, "1s"),
                                  spool=d / "txn.db", gateway_id="txn")
        gw = Gateway(load_config(cfg_path))
        runner = threading.Thread(target=gw.run, name="bench-gateway", daemon=True)
        runner.start()
        time.sleep(1.5)
        c0, a0 = gw.outbox.stats.commits, gw.outbox.stats.accepted
        time.sleep(seconds)
        c1, a1 = gw.outbox.stats.commits, gw.outbox.stats.accepted
        gw.request_stop()
        runner.join(30)
    finally:
        broker.stop()
    return (c1 - c0) / seconds, (a1 - a0) / seconds


if __name__ == "__main__":
    print_results(run())
