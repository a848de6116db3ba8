"""The Raspberry Pi's own health: SoC temperature, power and throttling flags, disk, memory, load.

- SoC temperature: `/sys/class/thermal/thermal_zone0/temp`, millidegree Celsius.
- Throttling: the firmware's `get_throttled` word, which the kernel's raspberrypi
  firmware driver exposes as `/sys/devices/platform/soc/soc:firmware/get_throttled` (hex).
  Bits per the Raspberry Pi documentation ("vcgencmd get_throttled"): 0 under-voltage
  now, 1 ARM frequency capped now, 2 throttled now, 3 soft temperature limit now;
  16–19 the same "has occurred since boot".
- Free space on the spool's file system (`statvfs`), available memory
  (`/proc/meminfo` MemAvailable, kB) and the 1-minute load (`/proc/loadavg`).

Under-voltage is the commonest cause of SD-card corruption on a Pi, so it is
published as its own flag (and the reader warns once per change).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from gateway.catalog.spec import DeviceSpec, KernelPoll, SysfsEnv
from gateway.config.model import DeviceBase
from gateway.config.schema import Field
from gateway.config.types import Duration

log = logging.getLogger("gateway.drivers.pi_health")

THERMAL = Path("sys/class/thermal/thermal_zone0/temp")
THROTTLED = Path("sys/devices/platform/soc/soc:firmware/get_throttled")

#: Bit -> quantity key (Raspberry Pi documentation, get_throttled).
THROTTLE_BITS = {
    0: "under_voltage",
    1: "freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
    16: "under_voltage_since_boot",
    17: "freq_capped_since_boot",
    18: "throttled_since_boot",
    19: "soft_temp_limit_since_boot",
}


def decode_throttled(word: int) -> dict[str, bool]:
    return {key: bool(word >> bit & 1) for bit, key in THROTTLE_BITS.items()}


def parse_throttled(text: str) -> int:
    """`50005`, `0x50005` or vcgencmd's `throttled=0x50005` -> 0x50005."""
    value = text.strip().rpartition("=")[2]
    return int(value, 16)


def read_meminfo_available_mb(root: Path) -> float | None:
    try:
        with open(root / "proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return round(int(line.split()[1]) / 1024.0, 1)  # kB -> MiB
    except OSError:
        return None
    return None


def read_health(root: Path, spool_dir: Path | None) -> dict[str, float | bool]:
    """One reading. Files a board does not have (not a Pi, an old kernel) are left out."""
    out: dict[str, float | bool] = {}
    try:
        out["soc_temperature_c"] = round(int((root / THERMAL).read_text()) / 1000.0, 3)
    except (OSError, ValueError):
        pass
    try:
        out.update(decode_throttled(parse_throttled((root / THROTTLED).read_text())))
    except (OSError, ValueError):
        pass
    if spool_dir is not None:
        st = os.statvfs(spool_dir)
        out["disk_free_mb"] = round(st.f_bavail * st.f_frsize / 1e6, 1)
    mem = read_meminfo_available_mb(root)
    if mem is not None:
        out["memory_available_mb"] = mem
    try:
        out["load_1m"] = float((root / "proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


# -- the catalog entry ------------------------------------------------------------



class PiHealthConfig(DeviceBase):
    driver: Literal["pi_health"]
    interval: Duration = Field(default=60.0, description="Poll interval.")


class HealthPoll:
    """One reading; under-voltage warned once per change (the commonest cause of SD corruption)."""

    def __init__(self, cfg: PiHealthConfig, env: SysfsEnv) -> None:
        self.cfg = cfg
        self.root = env.root
        self.spool_dir = env.state_dir
        self.under_voltage: bool | None = None

    def read(self) -> dict[str, Any]:
        values = read_health(self.root, self.spool_dir)
        uv = values.get("under_voltage")
        if isinstance(uv, bool) and uv != self.under_voltage:
            if uv:
                log.warning("%s: UNDER-VOLTAGE: the Pi's supply is too weak (SD-card corruption "
                            "risk); use the official power supply and a short, thick cable", self.cfg.name)
            elif self.under_voltage:
                log.info("%s: supply voltage is back to normal", self.cfg.name)
            self.under_voltage = uv
        return values


def _poll(cfg: PiHealthConfig, env: SysfsEnv) -> Any:
    return HealthPoll(cfg, env).read


SPEC = DeviceSpec(
    driver="pi_health",
    summary="The Raspberry Pi's own health (SoC temperature, under-voltage, throttling, disk, memory)",
    kind="kernel",
    config=PiHealthConfig,
    quantities=("soc_temperature_c", "under_voltage", "freq_capped", "throttled", "soft_temp_limit",
                "under_voltage_since_boot", "freq_capped_since_boot", "throttled_since_boot",
                "soft_temp_limit_since_boot", "disk_free_mb", "memory_available_mb", "load_1m"),
    kernel_poll=KernelPoll(_poll),
    reference="Raspberry Pi documentation (get_throttled); Linux thermal sysfs",
    manufacturer="Raspberry Pi Ltd",
    model="Raspberry Pi",
)
