"""Shared benchmark helpers: processes, CPU and memory from /proc, a C subscriber."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import Mosquitto, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PY = sys.executable

__all__ = [
    "PY",
    "REPO",
    "CountingSubscriber",
    "Mosquitto",
    "Result",
    "cpu_seconds",
    "free_port",
    "gateway_config",
    "print_results",
    "rss_bytes",
    "start_gateway",
    "stop",
    "tmp102_devices",
    "workdir",
]


def workdir(name: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.chmod(d, 0o755)
    return d


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU time (ns, from schedstat) of a process's live threads so far, by thread name
    (the daemon names its threads for the kernel: gateway.libc.name_native_thread)."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            ns = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
        out[name] = out.get(name, 0) + ns
    return out


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mosquitto_sub_binary() -> str | None:
    return shutil.which("mosquitto_sub")


class CountingSubscriber:
    """mosquitto_sub (C, so the subscriber is never the bottleneck) counting arrivals.

    With `keep`, every line (topic + payload) is kept with its arrival time.
    """

    def __init__(self, port: int, topic: str, qos: int = 1, keep: bool = False) -> None:
        exe = mosquitto_sub_binary()
        if exe is None:
            raise RuntimeError("mosquitto_sub is needed (apt-get install mosquitto-clients)")
        self.proc = subprocess.Popen(
            [exe, "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos), "-v"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
        )
        self.count = 0
        self.keep = keep
        self.lines: list[tuple[float, bytes]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="bench-sub-reader", daemon=True)
        self._thread.start()
        time.sleep(0.3)  # let the subscription settle

    def _read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        while True:
            chunk = self.proc.stdout.read(65536)
            if not chunk:
                return
            now = time.time()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            with self._cond:
                self.count += len(lines)
                if self.keep:
                    self.lines.extend((now, ln) for ln in lines)
                self._cond.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, timeout)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # still writing a burst to a full pipe
            self.proc.kill()
            self.proc.wait(5)


def gateway_config(path: Path, port: int, devices: list[dict[str, Any]], *,
                   spool: Path, extra: str = "", gateway_id: str = "bench") -> Path:
    lines = [
        "gateway:", f"  id: {gateway_id}", "  simulate: true", "  health_interval: 1h",
        "mqtt:", "  host: 127.0.0.1", f"  port: {port}",
        "buffer:", f"  path: {spool}",
    ]
    if extra:
        lines.append(extra)
    lines.append("devices:")
    for d in devices:
        lines.append(f"  - name: {d['name']}")
        for k, v in d.items():
            if k != "name":
                lines.append(f"    {k}: {v}")
    path.write_text("\n".join(lines) + "\n")
    return path


def tmp102_devices(n: int, interval: str, bus_start: int = 1) -> list[dict[str, Any]]:
    """n simulated TMP102s (4 addresses per bus, so several buses)."""
    return [
        {"name": f"t{i}", "driver": "tmp102", "bus": bus_start + i // 4,
         "address": 0x48 + i % 4, "interval": interval}
        for i in range(n)
    ]


def start_gateway(config: Path, log: Path, env: dict[str, str] | None = None,
                  launcher: Path | None = None,
                  pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """`python -m gateway run`, or `python LAUNCHER run` (e.g. traced_gateway.py), with
    `pass_fds` left open in it."""
    e = dict(os.environ)
    e.update(env or {})
    logf = open(log, "ab")  # noqa: SIM115
    command = [PY, str(launcher)] if launcher is not None else [PY, "-m", "gateway"]
    p = subprocess.Popen([*command, "--log-level", "warning", "run", "-c", str(config)],
                         stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, env=e,
                         pass_fds=pass_fds)
    logf.close()
    return p


def stop(p: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@dataclass
class Result:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "baseline": self.baseline, "baseline_name": self.baseline_name,
                "ratio": self.ratio, "goal": self.goal, "met": self.met, "note": self.note}


def print_results(results: list[Result]) -> None:
    print(f"{'benchmark':<38} {'value':>12} {'unit':<10} {'baseline':>12} {'ratio':>7}  goal")
    for r in results:
        base = f"{r.baseline:12.4g}" if r.baseline is not None else " " * 12
        ratio = f"{r.ratio:7.3f}" if r.ratio is not None else " " * 7
        mark = {True: "met", False: "NOT met", None: ""}[r.met]
        print(f"{r.name:<38} {r.value:12.4g} {r.unit:<10} {base} {ratio}  {r.goal} {mark}")
