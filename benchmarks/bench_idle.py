"""Idle: CPU % of one core with 10 simulated sensors at 1 s intervals, and wake-ups per thread.

The daemon runs against a real Mosquitto with a C subscriber; after the first
readings arrive it is measured over WINDOW seconds. The baseline is a bare
`python -c "import time; time.sleep(...)"` measured over the same window in
parallel (the floor of an interpreter that does nothing).

Wake-ups: the kernel's voluntary context switches per thread
(/proc/PID/task/TID/status) over the window: a thread blocking on a
queue/event/socket counts one per sleep. Python 3.11 does not give threads
native names, so TIDs are mapped to Python thread names with `py-spy dump`
(when py-spy is there). Each thread's wake rate is compared with the work it
has to do: a reader polls once per interval; the spooler, the publisher and
paho's network thread have at most one event per reading (plus a small
constant for keepalive); the main thread sleeps until a signal or a tick.
A blocked GIL hand-off also counts as a voluntary switch, so readers polling
at the same instant show a little more than one wake per poll.
"""

from __future__ import annotations

import os
import re
import shutil
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
    cpu_seconds,
    gateway_config,
    print_results,
    start_gateway,
    stop,
    tmp102_devices,
    workdir,
)

SENSORS = 10
INTERVAL = 1.0
WINDOW = 60.0
#: A thread may wake this many times its work rate (GIL hand-offs, PUBACKs) before it is flagged.
SLACK = 2.5


def thread_switches(pid: int) -> dict[int, int]:
    """Voluntary context switches so far, per thread id."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended between listing and reading
        m = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", text, re.M)
        if m:
            out[int(task.name)] = int(m.group(1))
    return out


def thread_names(pid: int) -> dict[int, str]:
    """TID -> Python thread name: the name the daemon gives each thread in the kernel
    (gateway.libc.name_native_thread; the main thread keeps the process's), else
    `py-spy dump` where it is installed."""
    names: dict[int, str] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            names[int(tid)] = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue  # ended meanwhile
    names[pid] = "MainThread"
    if len(set(names.values())) == len(names):  # each named apart: no need for py-spy
        return names
    exe = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(exe).exists():
        return {}
    try:
        out = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"bench_idle: py-spy dump failed: {exc}", file=sys.stderr)
        return {}
    return {int(m.group(1)): m.group(2)
            for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', out, re.M)}


def work_rate(name: str) -> float:
    """Events per second the thread's work needs in this configuration."""
    readings = SENSORS / INTERVAL
    if name.startswith("reader-"):
        return 1.0 / INTERVAL
    if name == "MainThread":
        return 0.1  # signals and supervisor ticks only
    return readings + 1.0  # spooler, publisher, paho: one per reading, plus keepalive/acks


def measure(window: float = WINDOW) -> tuple[float, float, float, list[tuple[str, float, float]]]:
    """(gateway CPU %, bare-python CPU %, broker CPU %, [(thread, wakes/s, work/s)])."""
    d = workdir("idle")
    broker = Mosquitto(d / "broker")
    broker.start()
    gw: subprocess.Popen[bytes] | None = None
    bare: subprocess.Popen[bytes] | None = None
    sub: CountingSubscriber | None = None
    try:
        assert broker.proc is not None
        cfg = gateway_config(d / "idle.yaml", broker.port,
                             tmp102_devices(SENSORS, f"{int(INTERVAL * 1000)}ms"),
                             spool=d / "idle.db", gateway_id="idle")
        sub = CountingSubscriber(broker.port, "gateway/idle/+")
        gw = start_gateway(cfg, d / "idle.log")
        bare = subprocess.Popen([PY, "-c", f"import time; time.sleep({window + 30})"])
        if not sub.wait_count(2 * SENSORS, 60):
            raise RuntimeError(f"no readings from the gateway; see {d}/idle.log")
        time.sleep(2.0)  # past start-up work (discovery, first commits)
        names = thread_names(gw.pid)
        s0 = thread_switches(gw.pid)
        g0, b0, k0 = cpu_seconds(gw.pid), cpu_seconds(bare.pid), cpu_seconds(broker.proc.pid)
        t0 = time.monotonic()
        time.sleep(window)
        g1, b1, k1 = cpu_seconds(gw.pid), cpu_seconds(bare.pid), cpu_seconds(broker.proc.pid)
        t1 = time.monotonic()
        s1 = thread_switches(gw.pid)
        if gw.poll() is not None:
            raise RuntimeError(f"the gateway exited during the window; see {d}/idle.log")
    finally:
        if bare is not None:
            bare.kill()
            bare.wait(10)
        if gw is not None:
            stop(gw)
        if sub is not None:
            sub.stop()
        broker.stop()
    span = t1 - t0
    threads = []
    for tid in sorted(s1):
        if tid in s0:
            name = names.get(tid, f"tid {tid}")
            threads.append((name, (s1[tid] - s0[tid]) / span, work_rate(name)))
    shutil.rmtree(d, ignore_errors=True)
    return ((g1 - g0) / span * 100, (b1 - b0) / span * 100, (k1 - k0) / span * 100, threads)


def run() -> list[Result]:
    gw_pct, bare_pct, broker_pct, threads = measure()
    named = all(not n.startswith("tid ") for n, _, _ in threads)
    over = [(n, w, need) for n, w, need in threads if w > SLACK * need] if named else []
    busiest = max(threads, key=lambda t: t[1]) if threads else ("?", 0.0, 0.0)
    detail = ", ".join(f"{n} {w:.1f}/s" for n, w, _ in threads)
    print(f"bench_idle: wake-ups per thread over {WINDOW:.0f} s: {detail}")
    return [
        Result(f"idle CPU ({SENSORS} sensors @ {INTERVAL:g} s)", gw_pct, "% core", bare_pct,
               "bare python sleeping", "<= 0.5 % of a core", gw_pct <= 0.5,
               f"broker {broker_pct:.2f} %; absolute floor is the bare interpreter"),
        Result("idle: busiest thread wake-ups", busiest[1], "wakes/s", busiest[2],
               "its work events/s", f"every thread <= {SLACK:g}x its work",
               (not over) if named else None,
               ("over: " + ", ".join(f"{n} {w:.1f}/s (work {need:.1f}/s)" for n, w, need in over)
                if over else f"{busiest[0]}; " + detail) if named
               else "threads not named (an old daemon without kernel thread names, and no "
               "py-spy): " + detail),
    ]


if __name__ == "__main__":
    print_results(run())
