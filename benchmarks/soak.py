"""Soak: the gateway under ~200 readings/s for N minutes while the broker restarts and the
gateway is SIGKILLed and SIGHUPed, in turn. Not part of `make test`.

Usage: .venv/bin/python benchmarks/soak.py [--minutes 30] [--period 20] [--rate 200]

Readings: microcontrollers on real ptys (benchmarks/mcu_feeder.py, each its own process
and a `lines` device), sharing the rate. A durable QoS 1 subscriber
(its own session on a broker with persistence) collects everything. At the end the
gateway stops cleanly with the broker up, and the spool's `seqs` table says what was
accepted: every device's seqs 1..last must have arrived (lost must be 0).

Printed: lost; duplicates per fault (a duplicate is counted for the last fault before
it arrived; the broker's own redeliveries to the subscriber, DUP flag set, apart);
recovery time (broker restart: from the broker's return to the gateway's reconnect,
from its log; SIGKILL: from the restart to the first new reading at the subscriber);
the gateway's RSS over time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PY, REPO, Mosquitto, rss_bytes, workdir

PREFIX = "gateway/soak"
MCUS = 2


class Collector:
    """A durable QoS 1 subscriber keeping (device, seq, dup flag, arrival time)."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[str, int, bool, float]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-collector",
                                  clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/+", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        device = msg.topic.rsplit("/", 1)[1]
        if device in ("status", "health"):
            return
        seq = json.loads(msg.payload)["seq"]
        with self.lock:
            self.got.append((device, seq, bool(msg.dup), time.time()))

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_config(d: Path, port: int, links: list[Path]) -> Path:
    cfg = d / "gw.yaml"
    cfg.write_text(
        "gateway:\n  id: soak\n  stop_timeout: 10s\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n"
        f"buffer:\n  path: {d / 'spool.db'}\n"
        "devices:\n" + "".join(
            f"  - name: mcu{i}\n    driver: lines\n    port: {link}\n    baudrate: 115200\n"
            "    format: kv\n    fields:\n      - {name: temp, unit: c}\n"
            "      - {name: soil, unit: pct}\n" for i, link in enumerate(links)))
    return cfg


def start_gateway(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - closed right after the fork
    try:
        return subprocess.Popen([PY, "-m", "gateway", "run", "-c", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO)
    finally:
        out.close()


def log_times(log: Path, needle: str) -> list[float]:
    """Unix times of the log lines containing `needle` (the log's clock is UTC)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if needle in line:
            try:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            out.append(stamp.replace(tzinfo=UTC).timestamp())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--period", type=float, default=20.0, help="seconds between faults")
    ap.add_argument("--rate", type=float, default=200.0, help="readings per second offered")
    args = ap.parse_args()

    d = workdir("soak")
    broker = Mosquitto(d / "broker", persistent=True)
    broker.start()
    links = [d / f"ttyMCU{i}" for i in range(MCUS)]
    feeders = [subprocess.Popen([PY, str(REPO / "benchmarks/mcu_feeder.py"), str(link),
                                 f"{args.rate / MCUS:.0f}"], stdin=subprocess.PIPE, cwd=REPO)
               for link in links]
    for _ in range(50):
        if all(link.exists() for link in links):
            break
        time.sleep(0.1)
    cfg = write_config(d, broker.port, links)
    log = d / "gw.log"
    sub = Collector(broker.port)
    gw = start_gateway(cfg, log)
    faults: list[tuple[float, str]] = []  # (wall time, kind)
    recovery: dict[str, list[float]] = defaultdict(list)
    rss: list[tuple[float, float]] = []
    t_start = time.time()
    end = time.monotonic() + args.minutes * 60
    kinds = ["broker_restart", "sigkill", "sighup"]
    n = 0
    next_rss = time.monotonic() + 10
    print(f"soak: {args.minutes:g} min, a fault every {args.period:g} s, ~{args.rate:g} "
          f"readings/s; work dir {d}", flush=True)
    try:
        while time.monotonic() < end:
            wake = time.monotonic() + args.period
            while time.monotonic() < wake:
                if time.monotonic() >= next_rss:
                    rss.append((time.time() - t_start, rss_bytes(gw.pid) / 2**20))
                    next_rss += 30
                time.sleep(0.5)
            kind = kinds[n % len(kinds)]
            n += 1
            faults.append((time.time(), kind))
            if kind == "broker_restart":
                broker.stop()
                time.sleep(3.0)  # readings pile up in the spool
                broker.start()
                up = time.time()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    back = [t for t in log_times(log, "reconnected to") if t >= up - 0.01]
                    if back:
                        recovery[kind].append(back[0] - up)
                        break
                    time.sleep(0.1)
            elif kind == "sigkill":
                gw.send_signal(signal.SIGKILL)
                gw.wait(10)
                gw = start_gateway(cfg, log)
                started, before = time.time(), sub.count()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and sub.count() <= before:
                    time.sleep(0.05)
                recovery[kind].append(time.time() - started)
            else:
                gw.send_signal(signal.SIGHUP)
        # The end: broker up, a clean stop delivers everything accepted.
        gw.send_signal(signal.SIGTERM)
        code = gw.wait(60)
    except BaseException:
        # Interrupted (Ctrl-C) or failed: the broker is ours too, stop it by its PID.
        sub.stop()
        broker.stop()
        raise
    finally:
        if gw.poll() is None:
            gw.kill()
        for feeder in feeders:
            feeder.kill()
            feeder.wait(5)
    db = sqlite3.connect(d / "spool.db")
    last = dict(db.execute("SELECT device, seq FROM seqs").fetchall())
    left = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    db.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sub.lock:
            have = {(dev, s) for dev, s, _, _ in sub.got}
        if all((dev, s) in have for dev, top in last.items() for s in (top, 1)) and \
                len(have) >= sum(last.values()):
            break
        time.sleep(0.5)
    sub.stop()
    broker.stop()

    with sub.lock:
        got = list(sub.got)
    seen: set[tuple[str, int]] = set()
    dups: Counter[str] = Counter()
    broker_redelivered = 0
    for dev, seq, dup, at in got:
        if (dev, seq) in seen:
            if dup:
                broker_redelivered += 1
            else:
                cause = max((f for f in faults if f[0] <= at), default=(0.0, "none"))[1]
                dups[cause] += 1
        seen.add((dev, seq))
    lost = sum(1 for dev, top in last.items() for s in range(1, top + 1) if (dev, s) not in seen)
    counts = Counter(k for _, k in faults)
    print(f"\ngateway exit code at the end: {code}; left in the spool: {left}")
    print(f"accepted (sum of last seqs): {sum(last.values())}; received: {len(got)}; "
          f"per device: {last}")
    print(f"LOST: {lost}")
    print("duplicates by the gateway, per fault (count of faults, duplicates, per fault):")
    for kind in kinds:
        c = counts.get(kind, 0)
        print(f"  {kind:15s} {c:3d} faults  {dups.get(kind, 0):6d} duplicates  "
              f"{dups.get(kind, 0) / c if c else 0:7.1f} per fault")
    if dups.get("none"):
        print(f"  before any fault: {dups['none']}")
    print(f"broker's own redeliveries to the subscriber (DUP flag, not the gateway's): "
          f"{broker_redelivered}")
    for kind, times in recovery.items():
        if times:
            print(f"recovery after {kind}: min {min(times):.2f} s, median "
                  f"{sorted(times)[len(times) // 2]:.2f} s, max {max(times):.2f} s "
                  f"({len(times)} times)")
    print("gateway RSS over time (a new process after each SIGKILL):")
    for at, mb in rss:
        print(f"  {at / 60:6.1f} min  {mb:6.1f} MiB")
    if lost == 0 and code == 0:
        shutil.rmtree(d, ignore_errors=True)
        return 0
    print(f"kept for a look: {d} (the spool, the broker's and the gateway's logs)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
