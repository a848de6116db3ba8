"""Memory: RSS of the daemon with 10 sensors and no inference, import costs, lazy imports.

- RSS (and USS, the private part) of the running daemon after its first readings,
  against a bare interpreter that imports what any paho + SQLite + YAML program
  needs (`paho.mqtt.client`, `sqlite3`, `yaml`), measured in the same run. The
  package is byte-compiled first, as `pip install` (and so `make install`) leaves it.
- What each step of `edge-gateway run` adds, in one probe process that takes them in
  the daemon's order: plain models (the daemon never loads pydantic; a child process
  validates the file: gateway.config.snapshot), its imports, the config from the child,
  `Gateway(cfg)`, the start-up GC freeze. And the child's own peak RSS.
- Import time: `python -X importtime` of what `edge-gateway run` imports, the top 10
  by cumulative time, against `import paho.mqtt.client` the same way.
- Heavy imports: which of numpy, pydantic, prometheus_client, ai_edge_litert,
  tflite_runtime, multiprocessing, serial, pymodbus, dataclasses (it imports inspect,
  ast and dis: 0.8 MiB), inspect, hardware_sim a sensors-only
  config loads in the daemon (a probe process builds `Gateway(cfg)` as `run` does and
  lists `sys.modules`). Only hardware_sim belongs there (the config simulates).
"""

from __future__ import annotations

import json
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
    rss_bytes,
    start_gateway,
    stop,
    tmp102_devices,
    workdir,
)

SENSORS = 10
MiB = 1024 * 1024
HEAVY = ("numpy", "pydantic", "prometheus_client", "ai_edge_litert", "tflite_runtime",
         "multiprocessing", "serial", "pymodbus", "hardware_sim", "PIL", "asyncio",
         "dataclasses", "inspect")
#: Loaded in a simulated sensors-only config on purpose.
EXPECTED = {"hardware_sim"}
BASELINE_IMPORTS = "import paho.mqtt.client, sqlite3, yaml"
#: What `edge-gateway run` imports, with plain models (gateway.config.mode).
RUN_IMPORTS = ("from gateway.config.mode import use_plain_models; use_plain_models(); "
               "import gateway.cli, gateway.commands.run")


def compile_package() -> None:
    """Byte-compile the package as `pip install` does: the daemon's RSS depends on it (a
    module compiled from source at every start leaves the compiler's garbage behind)."""
    subprocess.run([PY, "-m", "compileall", "-q", "gateway", "hardware_sim"], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)


def uss_bytes(pid: int) -> int:
    """Private (unshared) memory: what this process alone costs."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def baseline_rss() -> tuple[int, int]:
    """(RSS, USS) of a bare interpreter holding paho + sqlite3 + yaml."""
    p = subprocess.Popen([PY, "-c", BASELINE_IMPORTS + "; import sys, time; "
                          "print('up', flush=True); time.sleep(60)"],
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        p.stdout.readline()
        time.sleep(0.2)
        return rss_bytes(p.pid), uss_bytes(p.pid)
    finally:
        p.kill()
        p.wait(10)


def daemon_rss(settle: float = 4.0) -> tuple[int, int]:
    d = workdir("memory")
    broker = Mosquitto(d / "broker")
    broker.start()
    gw: subprocess.Popen[bytes] | None = None
    sub: CountingSubscriber | None = None
    try:
        cfg = gateway_config(d / "mem.yaml", broker.port, tmp102_devices(SENSORS, "1s"),
                             spool=d / "mem.db", gateway_id="mem")
        sub = CountingSubscriber(broker.port, "gateway/mem/+")
        gw = start_gateway(cfg, d / "mem.log")
        if not sub.wait_count(2 * SENSORS, 60):
            raise RuntimeError(f"no readings from the gateway; see {d}/mem.log")
        time.sleep(settle)  # steady state: every reader has polled, commits done
        sizes = rss_bytes(gw.pid), uss_bytes(gw.pid)
    finally:
        if gw is not None:
            stop(gw)
        if sub is not None:
            sub.stop()
        broker.stop()
    shutil.rmtree(d, ignore_errors=True)  # kept on failure: the log is named in the error
    return sizes


def import_times(statement: str) -> list[tuple[int, str]]:
    """(cumulative µs, module) for every module `statement` imports, slowest first."""
    out = subprocess.run([PY, "-X", "importtime", "-c", statement], capture_output=True,
                         text=True, cwd=REPO, check=True).stderr
    rows = []
    for line in out.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), m.group(3)[1:] + m.group(4)))
    return sorted(rows, reverse=True)


def _top_level_us(statement: str) -> int:
    out = subprocess.run([PY, "-X", "importtime", "-c", statement], capture_output=True,
                         text=True, cwd=REPO, check=True).stderr
    total = 0
    for line in out.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| \S", line)  # one space: top level
        if m:
            total += int(m.group(1))
    return total


def total_import_us(statement: str) -> int:
    """Import time of `statement` beyond what interpreter start-up imports anyway."""
    return _top_level_us(statement) - _top_level_us("pass")


#: What each step of `edge-gateway run` costs in RSS, in its order: each statement runs
#: after the ones above it in one interpreter (a probe process).
IMPORT_STEPS = (
    ("python + paho + sqlite3 + yaml", "import paho.mqtt.client, sqlite3, yaml"),
    ("edge-gateway run's imports (plain models)", RUN_IMPORTS),
    ("the config, from the validating child", "from gateway.config.snapshot import "
     "load_validated; cfg = load_validated(CFG)"),
    ("Gateway(cfg) (spool, readers, sim)", "gw = gateway.commands.run.Gateway(cfg)"),
    ("start-up GC freeze", "gateway.commands.run.freeze_startup_objects()"),
)

STEP_PROBE = """
import json, os, sys
CFG = sys.argv[1]
def rss():
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
out, last = [], rss()
for name, stmt in json.loads(sys.argv[2]):
    exec(stmt)
    now = rss()
    out.append((name, now - last))
    last = now
out.append(("total", last))
import resource
out.append(("child", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
print(json.dumps(out))
gw.outbox.stop()
"""


def import_steps() -> list[tuple[str, int]]:
    """(step, RSS bytes it added) for IMPORT_STEPS, and ("total", RSS at the end)."""
    d = workdir("memsteps")
    cfg = gateway_config(d / "probe.yaml", 1, tmp102_devices(SENSORS, "1s"),
                         spool=d / "probe.db", gateway_id="probe")
    out = subprocess.run([PY, "-c", STEP_PROBE, str(cfg), json.dumps(IMPORT_STEPS)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"step probe failed: {out.stderr[-2000:]}")
    shutil.rmtree(d, ignore_errors=True)
    return [(str(n), int(b)) for n, b in json.loads(out.stdout.strip().splitlines()[-1])]


PROBE = """
import json, sys
from gateway.config.mode import use_plain_models
use_plain_models()
import gateway.cli
from gateway.commands.run import Gateway
from gateway.config.snapshot import load_validated
gw = Gateway(load_validated(sys.argv[1]))
heavy = json.loads(sys.argv[2])
print(json.dumps({"loaded": [m for m in heavy if m in sys.modules], "count": len(sys.modules)}))
gw.outbox.stop()
"""


def loaded_heavy() -> tuple[list[str], int]:
    """Heavy modules present after building a Gateway for a sensors-only config."""
    d = workdir("memprobe")
    cfg = gateway_config(d / "probe.yaml", 1, tmp102_devices(SENSORS, "1s"),
                         spool=d / "probe.db", gateway_id="probe")
    out = subprocess.run([PY, "-c", PROBE, str(cfg), json.dumps(HEAVY)], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"probe failed: {out.stderr[-2000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    shutil.rmtree(d, ignore_errors=True)
    return list(data["loaded"]), int(data["count"])


def median_import_us(statement: str, runs: int = 3) -> float:
    vals = sorted(total_import_us(statement) for _ in range(runs))
    return float(vals[len(vals) // 2])


def run() -> list[Result]:
    compile_package()
    rss, uss = daemon_rss()
    base_rss, base_uss = baseline_rss()
    top = import_times(RUN_IMPORTS)[:10]
    print("bench_memory: slowest imports of edge-gateway run (cumulative):")
    for us, mod in top:
        print(f"  {us / 1000:8.1f} ms  {mod}")
    gw_import = median_import_us(RUN_IMPORTS)
    paho_import = median_import_us("import paho.mqtt.client")
    loaded, count = loaded_heavy()
    steps = import_steps()
    print("bench_memory: RSS added by each step of a sensors-only daemon (one process):")
    for name, b in steps:
        if name == "child":
            print(f"  ({b / MiB:.1f} MiB: the validating child's peak, a process of its own "
                  "that exits before the daemon starts its readers)")
        else:
            print(f"  {b / MiB:6.1f} MiB  {name}")
    unexpected = [m for m in loaded if m not in EXPECTED]
    return [
        Result(f"daemon RSS ({SENSORS} sensors, no inference)", rss / MiB, "MiB", base_rss / MiB,
               "python+paho+sqlite3+yaml", "<= 28 MiB", rss / MiB <= 28,
               f"USS {uss / MiB:.1f} MiB (baseline USS {base_uss / MiB:.1f} MiB)"),
        Result("import edge-gateway run (plain models)", gw_import / 1000, "ms", paho_import / 1000,
               "import paho.mqtt.client", "", None,
               "top: " + ", ".join(f"{m.strip()} {us / 1000:.0f} ms" for us, m in top[:5])),
        Result("heavy modules loaded (sensors only)", float(len(unexpected)), "modules", None, "",
               "0 unexpected", not unexpected,
               f"loaded: {', '.join(loaded) or 'none'} (expected: {', '.join(sorted(EXPECTED))}); "
               f"{count} modules in sys.modules"),
    ]


if __name__ == "__main__":
    print_results(run())
