"""RSS over a long run with broker outages (not part of `make bench`: it takes minutes).

10 simulated sensors at 10 Hz (100 readings/s) through the disk spool. The broker is
stopped for `--down` seconds and started for `--up` seconds, in turn, for `--minutes`.
The gateway's RSS is sampled at the end of every "up" phase, once the backlog has been
delivered (the spool is empty again), so each sample is the same state of the pipeline.
Printed: RSS per outage, the growth over the run after the warm-up (the first
`--warmup` outages), and MiB per outage (a least-squares slope over those samples).

With `--trace` the gateway runs under tracemalloc (benchmarks/traced_gateway.py) and each
sample also gives the bytes Python holds in objects and the bytes SQLite holds: both flat
while RSS grows means the growth is what the allocators keep of freed memory.
RSS is larger under tracemalloc; measure it without `--trace`.

Usage: .venv/bin/python benchmarks/bench_outage_rss.py [--minutes 10] [--down 20] [--up 20]
       [--journal on|off] [--trace]
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    CountingSubscriber,
    Mosquitto,
    gateway_config,
    rss_bytes,
    start_gateway,
    stop,
    tmp102_devices,
    workdir,
)

MiB = 1024 * 1024
TRACED = Path(__file__).resolve().parent / "traced_gateway.py"


def queued(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    finally:
        con.close()


def slope(points: list[tuple[int, float]]) -> float:
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def held(n: int, gw: subprocess.Popen[bytes], reports: int,
         traced: list[tuple[int, float]], in_sqlite: list[tuple[int, float]]) -> None:
    """Ask the traced gateway (SIGUSR2) what Python objects and SQLite hold; note both.
    Its answer is one line on the pipe `reports`: empty if the gateway has gone."""
    gw.send_signal(signal.SIGUSR2)
    line = os.read(reports, 4096) if select.select([reports], [], [], 60)[0] else b""
    if not line:
        raise RuntimeError(f"the traced gateway did not report (exit {gw.poll()})")
    python, sqlite = (int(v) for v in line.split())
    traced.append((n, python / MiB))
    if sqlite >= 0:
        in_sqlite.append((n, sqlite / MiB))


def inside(traced: list[tuple[int, float]], in_sqlite: list[tuple[int, float]]) -> str:
    if not traced:
        return ""
    sqlite = f", in SQLite {in_sqlite[-1][1]:.3f}" if in_sqlite else ""
    return f" (in Python objects {traced[-1][1]:.3f}{sqlite})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--down", type=float, default=20.0)
    ap.add_argument("--up", type=float, default=20.0)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--journal", choices=("on", "off"), default="on",
                    help="buffer.journal (off: every burst is a SQLite commit)")
    ap.add_argument("--trace", action="store_true",
                    help="also sample the bytes in Python objects (tracemalloc)")
    args = ap.parse_args()
    d = workdir("outage-rss")
    broker = Mosquitto(d / "broker")
    broker.start()
    db = d / "o.db"
    cfg = gateway_config(d / "o.yaml", broker.port, tmp102_devices(10, "100ms"), spool=db,
                         gateway_id="o",
                         extra="  journal: false" if args.journal == "off" else "")
    samples: list[tuple[int, float]] = []
    traced: list[tuple[int, float]] = []
    in_sqlite: list[tuple[int, float]] = []
    reports, report_end = os.pipe()  # the traced gateway writes its figures to report_end
    sub: CountingSubscriber | None = None
    gw = None
    try:  # from here on, a failure still stops the broker, subscriber and gateway
        sub = CountingSubscriber(broker.port, "gateway/o/+")
        gw = start_gateway(cfg, d / "o.log", env={"EG_TRACE_FD": str(report_end)},
                           launcher=TRACED if args.trace else None, pass_fds=(report_end,))
        os.close(report_end)  # only the gateway holds it now: its exit is EOF here
        if not sub.wait_count(100, 60):
            raise RuntimeError(f"no readings; see {d}/o.log")
        time.sleep(args.up)
        samples.append((0, rss_bytes(gw.pid) / MiB))
        if args.trace:
            held(0, gw, reports, traced, in_sqlite)
        print(f"outage  0: RSS {samples[-1][1]:.2f} MiB{inside(traced, in_sqlite)} "
              "(before any outage)", flush=True)
        end = time.monotonic() + args.minutes * 60
        n = 0
        while time.monotonic() < end:
            n += 1
            sub.stop()
            broker.stop()
            time.sleep(args.down)
            broker.start()
            sub = CountingSubscriber(broker.port, "gateway/o/+")
            t = time.monotonic()
            while queued(db) > 50 and time.monotonic() - t < 120:  # backlog delivered
                time.sleep(0.5)
            time.sleep(max(0.0, args.up - (time.monotonic() - t)))
            samples.append((n, rss_bytes(gw.pid) / MiB))
            if args.trace:
                held(n, gw, reports, traced, in_sqlite)
            print(f"outage {n:2d}: RSS {samples[-1][1]:.2f} MiB{inside(traced, in_sqlite)}, "
                  f"spool {queued(db)} rows, "
                  f"drained in {time.monotonic() - t:.1f} s", flush=True)
    finally:
        if gw is not None:
            stop(gw)
        if sub is not None:
            sub.stop()
        broker.stop()
        os.close(reports)
    for what, series in (("RSS", samples), ("in Python objects", traced),
                         ("in SQLite", in_sqlite)):
        after = [s for s in series if s[0] >= args.warmup]
        if len(after) >= 2:
            print(f"{what}, after warm-up (outage {args.warmup}..{after[-1][0]}): "
                  f"{after[0][1]:.3f} -> {after[-1][1]:.3f} MiB, "
                  f"{slope(after):+.4f} MiB per outage (least squares), "
                  f"max - min {max(y for _, y in after) - min(y for _, y in after):.3f} MiB")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
