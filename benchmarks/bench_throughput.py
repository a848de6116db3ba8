"""Throughput: delivered readings/s through the whole gateway vs raw paho-mqtt QoS 1.

- raw paho: one publisher process, QoS 1, MQTT 5, gateway-shaped payloads, as fast as it
  goes, timed from its first publish to its last PUBACK (the ceiling on this machine).
  Its rate swings from run to run; the best of three runs before the gateway and one
  after is the baseline.
- sustained pipeline (the goal): a microcontroller streaming key=value lines over a real
  pty (benchmarks/mcu_feeder.py, its own process, as a real device is) -> serial reader ->
  outbox -> SQLite spool (disk, sync=full) -> paho -> Mosquitto -> a C subscriber. The
  offered rate steps up from 0.6x raw paho by 7 % a step; the result is the highest
  rate delivered in full (>= 97 % of offered over the window, so no backlog builds up),
  the way network gear is rated (RFC 2544 throughput: the highest rate without loss).
- overload: the same source unpaced (faster than delivery): what gets delivered while the
  spool absorbs the excess. Nothing is lost; the accepted surplus waits on disk.
- I2C: 8 simulated TMP102 at 1 ms on 2 buses. Here the chip models run in the gateway's
  own process, so the simulator's Python competes for the GIL (on a Pi, an I2C transfer
  is a kernel ioctl that releases it), and polls that come late skip their slot.
- drain: a 100k-reading backlog in the spool (an outage), delivered after start, timed
  from the first delivery (spool -> paho -> broker at full speed).
CPU per delivered reading counts every process involved (publisher/gateway + broker).
"""

from __future__ import annotations

import os
import shutil
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


def broker_cpu(broker: Mosquitto) -> float:
    assert broker.proc is not None
    return cpu_seconds(broker.proc.pid)


def raw_paho(broker: Mosquitto) -> tuple[float, float]:
    """(messages/s, CPU µs per message) of raw paho QoS 1 publishing."""
    sub = CountingSubscriber(broker.port, "bench/raw/#")
    b0 = broker_cpu(broker)
    p = subprocess.Popen([PY, str(REPO / "benchmarks/raw_paho_publisher.py"), str(broker.port),
                          str(RAW_COUNT), "10", "0", "5"], stdout=subprocess.PIPE, cwd=REPO)
    assert p.stdout is not None
    reported = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    sub.wait_count(RAW_COUNT, 60)
    cpu = usage.ru_utime + usage.ru_stime + broker_cpu(broker) - b0
    sub.stop()
    # The publisher times itself from its first publish to its last PUBACK, so
    # interpreter start-up is not counted against the baseline.
    return float(reported.strip()), cpu / RAW_COUNT * 1e6


def gateway_steady(broker: Mosquitto, d: Path, devices: int = 8, window: float = 8.0
                   ) -> tuple[float, float]:
    """(delivered/s, accepted/s) from simulated TMP102s polled every 1 ms."""
    spool = d / "steady.db"
    cfg = gateway_config(d / "steady.yaml", broker.port, tmp102_devices(devices, "1ms"),
                         spool=spool, gateway_id="bench")
    sub = CountingSubscriber(broker.port, "gateway/bench/+")
    gw = start_gateway(cfg, d / "steady.log")
    try:
        sub.wait_count(2000, 30)
        time.sleep(2.0)  # warm up
        c0, a0, t0 = sub.count, _accepted(spool), time.monotonic()
        time.sleep(window)
        c1, a1, t1 = sub.count, _accepted(spool), time.monotonic()
    finally:
        stop(gw)
        sub.stop()
    return (c1 - c0) / (t1 - t0), (a1 - a0) / (t1 - t0)


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


def _serial_config(d: Path, port: int, link: Path) -> Path:
    cfg = d / "serial.yaml"
    cfg.write_text(
        "gateway:\n  id: bench\n  health_interval: 1h\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n"
        f"buffer:\n  path: {d / 'serial.db'}\n"
        "devices:\n"
        "  - name: mcu\n    driver: lines\n"
        f"    port: {link}\n    baudrate: 115200\n    format: kv\n"
        "    fields:\n      - {name: temp, unit: c}\n      - {name: soil, unit: pct}\n"
    )
    return cfg


def serial_pipeline(broker: Mosquitto, d: Path, raw_rate: float, window: float = 5.0
                    ) -> tuple[float, float, float, list[tuple[float, float]]]:
    """(sustained delivered/s, CPU µs per reading there, overload delivered/s, steps).

    Steps the microcontroller's rate up until the gateway no longer delivers all of it.
    """
    link = d / "ttyMCU"
    feeder = subprocess.Popen([PY, str(REPO / "benchmarks/mcu_feeder.py"), str(link), "1000"],
                              stdin=subprocess.PIPE, text=True, cwd=REPO)
    assert feeder.stdin is not None
    sub = CountingSubscriber(broker.port, "gateway/bench/+")
    gw: subprocess.Popen[bytes] | None = None
    steps: list[tuple[float, float]] = []
    best = best_cpu = 0.0
    try:
        for _ in range(50):  # the feeder makes its pty and the symlink
            if link.exists():
                break
            time.sleep(0.1)
        gw = start_gateway(_serial_config(d, broker.port, link), d / "serial.log")
        if not sub.wait_count(500, 30):
            raise RuntimeError(f"no readings from the serial pipeline; see {d}/serial.log")
        rate = 0.6 * raw_rate
        while rate <= 1.5 * raw_rate:
            feeder.stdin.write(f"{rate:.0f}\n")
            feeder.stdin.flush()
            time.sleep(1.5)  # settle at the new rate
            for _attempt in range(2):  # one retry: a shared 2-core VM has hiccups
                c0, g0, b0, t0 = sub.count, cpu_seconds(gw.pid), broker_cpu(broker), time.monotonic()
                time.sleep(window)
                c1, g1, b1, t1 = sub.count, cpu_seconds(gw.pid), broker_cpu(broker), time.monotonic()
                delivered = (c1 - c0) / (t1 - t0)
                if delivered >= 0.97 * rate:
                    break
            steps.append((rate, delivered))
            if delivered < 0.97 * rate:
                break
            best = delivered
            best_cpu = (g1 - g0 + b1 - b0) / max(c1 - c0, 1) * 1e6
            rate *= 1.07
        feeder.stdin.write("0\n")  # unpaced: offered beyond what can be delivered
        feeder.stdin.flush()
        time.sleep(2.0)
        c0, t0 = sub.count, time.monotonic()
        time.sleep(window)
        overload = (sub.count - c0) / (time.monotonic() - t0)
    finally:
        if gw is not None:
            stop(gw)
        sub.stop()
        feeder.kill()
        feeder.wait(5)
    return best, best_cpu, overload, steps


def run() -> list[Result]:
    d = workdir("throughput")
    broker = Mosquitto(d / "broker")
    broker.start()
    try:
        # raw paho's own rate swings (its publishing thread and its loop thread contend
        # for the GIL): the best of three before and one after is the baseline.
        raws = [raw_paho(broker) for _ in range(3)]
        sustained, sus_cpu, overload, steps = serial_pipeline(broker, d, max(raws)[0])
        i2c_rate, generated = gateway_steady(broker, d)
        drain_rate = drain(broker, d)
        raws.append(raw_paho(broker))
    finally:
        broker.stop()
    shutil.rmtree(d, ignore_errors=True)  # kept on failure: the logs are there
    raw_rate, raw_cpu = max(raws)
    txn_rate, reading_rate = transactions_per_second()
    ramp = ", ".join(f"{r:.0f}->{dlv:.0f}" for r, dlv in steps)
    return [
        Result("throughput: sustained readings/s", sustained, "msg/s", raw_rate,
               "raw paho QoS1", "ratio >= 0.8", sustained / raw_rate >= 0.8,
               "serial MCU on a pty -> reader -> disk spool (sync=full) -> broker, all "
               f"delivered; MQTT 5 both; offered->delivered/s: {ramp}"),
        Result("CPU per delivered reading", sus_cpu, "µs", raw_cpu, "raw paho QoS1",
               "(gateway + broker)", None),
        Result("overload: delivered readings/s", overload, "msg/s", raw_rate, "raw paho QoS1",
               "", None, "source unpaced; the surplus waits in the spool, none lost"),
        Result("I2C sim: delivered readings/s", i2c_rate, "msg/s", raw_rate, "raw paho QoS1",
               "", None,
               f"8 TMP102 at 1 ms offered 8000/s, {generated:.0f}/s accepted; chip models "
               "run in the gateway's process"),
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
    shutil.rmtree(d, ignore_errors=True)
    return (c1 - c0) / seconds, (a1 - a0) / seconds


if __name__ == "__main__":
    print_results(run())
