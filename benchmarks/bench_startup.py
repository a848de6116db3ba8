"""Start-up: process start -> `READY=1` on NOTIFY_SOCKET, without inference.

The benchmark plays systemd: it binds a unix datagram socket, starts
`python -m gateway run` with NOTIFY_SOCKET pointing at it (10 simulated
sensors, a real Mosquitto) and times the READY=1 datagram from the moment
before the process is spawned. It also times the first reading's arrival at
a subscriber (start -> first data at the broker). Median of RUNS starts.

Baseline: the wall time of `python -c "import paho.mqtt.client"` (interpreter
start + the MQTT library, the least any Python MQTT daemon must do).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    PY,
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

RUNS = 5
SENSORS = 10


def median(vals: list[float]) -> float:
    s = sorted(vals)
    return s[len(s) // 2]


def one_start(broker: Mosquitto, d: Path, i: int) -> tuple[float, float]:
    """(seconds to READY=1, seconds to the first reading at the subscriber)."""
    gid = f"start{i}"
    cfg = gateway_config(d / f"{gid}.yaml", broker.port, tmp102_devices(SENSORS, "100ms"),
                         spool=d / f"{gid}.db", gateway_id=gid)
    sock_path = d / f"notify{i}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sub: CountingSubscriber | None = None
    gw: subprocess.Popen[bytes] | None = None
    try:
        sock.bind(str(sock_path))
        sock.settimeout(30)
        sub = CountingSubscriber(broker.port, f"gateway/{gid}/+", keep=True)
        t0, t0_wall = time.monotonic(), time.time()
        gw = start_gateway(cfg, d / f"{gid}.log", {"NOTIFY_SOCKET": str(sock_path)})
        ready = None
        while ready is None:
            try:
                data = sock.recv(4096)
            except TimeoutError as exc:
                raise RuntimeError(f"no READY=1 within 30 s; see {d}/{gid}.log") from exc
            if b"READY=1" in data.split(b"\n"):
                ready = time.monotonic() - t0
        if not sub.wait_count(1, 30):
            raise RuntimeError(f"no reading within 30 s; see {d}/{gid}.log")
        first = sub.lines[0][0] - t0_wall  # arrival time stamped by the subscriber
        return ready, first
    finally:
        if gw is not None:
            stop(gw)
        if sub is not None:
            sub.stop()
        sock.close()


def paho_import() -> float:
    t0 = time.monotonic()
    subprocess.run([PY, "-c", "import paho.mqtt.client"], check=True)
    return time.monotonic() - t0


def run() -> list[Result]:
    d = workdir("startup")
    broker = Mosquitto(d / "broker")
    broker.start()
    try:
        starts = [one_start(broker, d, i) for i in range(RUNS)]
    finally:
        broker.stop()
    shutil.rmtree(d, ignore_errors=True)  # kept on failure: the logs are named in the error
    base = median([paho_import() for _ in range(RUNS)])
    ready = median([r for r, _ in starts])
    first = median([f for _, f in starts])
    return [
        Result("start-up: process -> READY=1", ready * 1000, "ms", base * 1000,
               "python -c 'import paho'", "<= 1000 ms (no inference)", ready <= 1.0,
               f"median of {RUNS}; all: {', '.join(f'{r * 1000:.0f}' for r, _ in starts)} ms"),
        Result("start-up: process -> first reading", first * 1000, "ms", base * 1000,
               "python -c 'import paho'", "", None,
               f"at a subscriber; sensors at 100 ms; median of {RUNS}"),
    ]


if __name__ == "__main__":
    print_results(run())
