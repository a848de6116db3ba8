"""A fake `/sys` (and `/proc`) for the kernel-driven sensors, in a temporary directory.

The gateway reads the same relative paths under this root as under `/` on a Pi:
1-Wire probes (`w1_slave` with real scratchpad bytes and CRC), IIO devices (DHT
overlay style `in_*_input`), hwmon chips, the thermal zone, the firmware's
`get_throttled`, `/proc/meminfo` and `/proc/loadavg`. One thread, `sim-sysfs`,
rewrites the values every `period` seconds (each file replaced atomically, as a
sysfs read is atomic), from the same slow profiles as the chip models.

Faults (`sim: {faults: {...}}` per device):
- ds18b20: `power_on` (85 °C power-on value), `crc` (a corrupted byte, `NO`),
  `missing` (the probe's directory disappears);
- iio: `eio_rate` (that share of reads fail with EIO, like a DHT's);
- pi_health: `under_voltage` (flags 0x50005: under-voltage now and since boot).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from gateway.drivers.crc import crc8_maxim

log = logging.getLogger("hardware_sim.sysfs")

DEFAULT_PROBES = ("28-00000a1b2c3d", "28-00000d4e5f60")


def scratchpad_line(celsius: float, corrupt: bool = False, power_on: bool = False) -> str:
    """The two lines of a DS18B20's `w1_slave` for `celsius` (12-bit resolution)."""
    raw = 0x0550 if power_on else round(celsius * 16) & 0xFFFF
    data = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10])
    crc = crc8_maxim(data)
    scratch = data + bytes([crc])
    if corrupt:
        scratch = bytes([scratch[0] ^ 0x01]) + scratch[1:]
    hexes = " ".join(f"{b:02x}" for b in scratch)
    ok = crc8_maxim(scratch) == 0
    signed = raw - 0x10000 if raw & 0x8000 else raw
    return f"{hexes} : crc={scratch[8]:02x} {'YES' if ok else 'NO'}\n{hexes} t={int(signed * 1000 / 16)}\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class SimSysfs:
    """The tree, its devices and the thread that keeps their values moving."""

    def __init__(self, period: float = 0.5, seed: int = 0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="edge-gateway-sysfs-"))
        # Removed by close(), or when dropped unclosed, or at exit (not after a SIGKILL).
        self._remove_root = weakref.finalize(self, shutil.rmtree, self.root, True)
        self.period = period
        self._rng = random.Random(seed)
        self._updaters: list[Any] = []
        #: Each device's faults, by device name: tests may change them while it runs.
        self.faults: dict[str, dict[str, Any]] = {}
        self._eio: dict[Path, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.started = time.monotonic()

    # -- devices --------------------------------------------------------------------------
    def add(self, driver: str, cfg: Any) -> None:
        faults = self.faults[cfg.name] = dict((cfg.sim or {}).get("faults", {}))
        add = getattr(self, f"_add_{driver}")
        before = len(self._updaters)
        add(cfg, faults)
        t = time.monotonic() - self.started
        for update in self._updaters[before:]:  # its files exist before the first poll
            update(t)

    def _add_ds18b20(self, cfg: Any, faults: dict[str, Any]) -> None:
        if cfg.sensor is not None:
            ids = [cfg.sensor]
        elif isinstance(cfg.sensors, dict):
            ids = list(cfg.sensors.values())
        else:
            ids = list(DEFAULT_PROBES)
        w1 = self.root / "sys/bus/w1/devices"
        _write(w1 / "w1_bus_master1/therm_bulk_read", "0\n")
        for i, pid in enumerate(ids):
            base = 18.0 + 2.5 * i

            def update(t: float, pid: str = pid, base: float = base) -> None:
                d = w1 / pid
                if faults.get("missing") in (True, pid):
                    shutil.rmtree(d, ignore_errors=True)
                    return
                value = base + 1.5 * math.sin(t / 30.0)
                _write(d / "w1_slave", scratchpad_line(value, corrupt=bool(faults.get("crc")),
                                                       power_on=bool(faults.get("power_on"))))

            self._updaters.append(update)

    def _next(self, cls: str) -> Path:
        base = self.root / cls
        n = 0
        while (base / f"{'iio:device' if 'iio' in cls else 'hwmon'}{n}").exists():
            n += 1
        return base / f"{'iio:device' if 'iio' in cls else 'hwmon'}{n}"

    def _add_iio(self, cfg: Any, faults: dict[str, Any]) -> None:
        base = "sys/bus/iio/devices"
        d = self.root / base / cfg.device if cfg.device else self._next(base)
        _write(d / "name", f"{cfg.chip or 'dht11'}\n")
        rate = float(faults.get("eio_rate", 0.0))
        if rate:
            self._eio[d] = rate

        def update(t: float) -> None:
            _write(d / "in_temp_input", f"{round((21.0 + math.sin(t / 40.0)) * 1000)}\n")
            _write(d / "in_humidityrelative_input", f"{round((55.0 + 5 * math.sin(t / 50.0)) * 1000)}\n")

        self._updaters.append(update)

    def _add_hwmon(self, cfg: Any, faults: dict[str, Any]) -> None:
        d = self._next("sys/class/hwmon")
        _write(d / "name", f"{cfg.chip}\n")

        def update(t: float) -> None:
            _write(d / "temp1_input", f"{round((45.0 + 3 * math.sin(t / 20.0)) * 1000)}\n")
            if cfg.chip != "cpu_thermal":
                _write(d / "in0_input", f"{round(5000 + 30 * math.sin(t / 10.0))}\n")

        self._updaters.append(update)

    def _add_pi_health(self, cfg: Any, faults: dict[str, Any]) -> None:
        word = 0x50005 if faults.get("under_voltage") else 0

        def update(t: float) -> None:
            _write(self.root / "sys/class/thermal/thermal_zone0/temp",
                   f"{round((48.0 + 4 * math.sin(t / 60.0)) * 1000)}\n")
            _write(self.root / "sys/devices/platform/soc/soc:firmware/get_throttled", f"{word:x}\n")
            _write(self.root / "proc/meminfo",
                   "MemTotal:        3884360 kB\nMemFree:         2000000 kB\n"
                   f"MemAvailable:    {3000000 + round(1000 * math.sin(t))} kB\n")
            _write(self.root / "proc/loadavg", f"{0.2 + 0.1 * math.sin(t / 7.0):.2f} 0.15 0.10 1/123 4567\n")

        self._updaters.append(update)

    # -- reads with faults -----------------------------------------------------------------
    def read_text(self, path: Path) -> str:
        """`Path.read_text` with the configured EIO share, as a flaky kernel driver gives."""
        for d, rate in self._eio.items():
            if path.is_relative_to(d) and path.name.endswith("_input"):
                with self._lock:
                    fail = self._rng.random() < rate
                if fail:
                    raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return path.read_text()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._tick()  # values exist before the first poll
        self._thread = threading.Thread(target=self._run, name="sim-sysfs", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        t = time.monotonic() - self.started
        for update in self._updaters:
            update(t)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self._tick()
            except OSError as exc:
                if not self._stop.is_set():  # at close the tree goes away under us
                    log.error("simulated sysfs update failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._remove_root()
