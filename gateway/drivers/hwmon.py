"""Hardware-monitoring chips the kernel drives (`/sys/class/hwmon/hwmonN/`).

Documentation/hwmon/sysfs-interface.rst fixes the units: `temp*_input` in millidegree
Celsius, `in*_input` in millivolt, `curr*_input` in milliampere, `power*_input` in
microwatt, `energy*_input` in microjoule, `humidity*_input` in milli-percent,
`fan*_input` in RPM. A chip is found by the contents of its `name` file
(`cpu_thermal`, `rpi_volt`, `sht3x`, `ina219`...), since the `hwmonN` numbers are
given out in probe order and change between boots.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from gateway.catalog.spec import DeviceSpec, KernelPoll, SysfsEnv
from gateway.config.model import DeviceBase
from gateway.config.schema import Field
from gateway.drivers.errors import DriverError
from gateway.drivers.sysfs import find_by_name

HWMON = Path("sys/class/hwmon")

#: prefix -> (quantity stem, unit suffix, factor from the sysfs unit)
KINDS = {
    "temp": ("temperature", "c", 1e-3),
    "in": ("voltage", "v", 1e-3),
    "curr": ("current", "a", 1e-3),
    "power": ("power", "w", 1e-6),
    "energy": ("energy", "wh", 1e-6 / 3600.0),
    "humidity": ("humidity", "pct", 1e-3),
    "fan": ("fan", "rpm", 1.0),
}
_ATTR = re.compile(r"^(temp|in|curr|power|energy|humidity|fan)(\d+)_input$")
_LABEL_CHARS = re.compile(r"[^a-z0-9]+")


def key_for(kind: str, index: int, label: str | None, first_index: int) -> str:
    """`temp1_input` -> temperature_c; a second one -> temperature2_c; a label names it."""
    stem, unit, _ = KINDS[kind]
    if label:
        clean = _LABEL_CHARS.sub("_", label.lower()).strip("_")
        if clean:
            return f"{clean}_{stem}_{unit}"
    return f"{stem}_{unit}" if index == first_index else f"{stem}{index}_{unit}"


def find_chip(root: Path, name: str) -> Path:
    base = root / HWMON
    found = find_by_name(base, name)
    if found is not None:
        return found
    raise FileNotFoundError(errno.ENOENT, f"no hwmon chip named {name!r}", str(base))


def read_chip(directory: Path) -> dict[str, float]:
    found: list[tuple[str, int, str]] = []
    for attr in sorted(os.listdir(directory)):
        m = _ATTR.match(attr)
        if m is not None:
            found.append((m.group(1), int(m.group(2)), attr))
    if not found:
        raise DriverError(f"{directory} has no *_input attribute")
    firsts: dict[str, int] = {}
    for kind, index, _ in found:
        firsts[kind] = min(index, firsts.get(kind, index))
    out: dict[str, float] = {}
    for kind, index, attr in found:
        label_file = directory / f"{kind}{index}_label"
        label = label_file.read_text().strip() if label_file.exists() else None
        value = float((directory / attr).read_text().strip()) * KINDS[kind][2]
        out[key_for(kind, index, label, firsts[kind])] = round(value, 6)
    return out


def read_named(root: Path, name: str) -> dict[str, float]:
    return read_chip(find_chip(root, name))


# -- the catalog entry ------------------------------------------------------------

class HwmonConfig(DeviceBase):
    driver: Literal["hwmon"]
    chip: str = Field(min_length=1, description="The chip's `name` in /sys/class/hwmon/*/name.")


def _poll(cfg: HwmonConfig, env: SysfsEnv) -> Callable[[], dict[str, Any]]:
    return lambda: read_named(env.root, cfg.chip)


def _publishes(cfg: HwmonConfig) -> tuple[str, ...]:
    """Known ahead for the SoC's thermal zone; other chips' channels are found at run time."""
    return ("temperature_c",) if cfg.chip == "cpu_thermal" else ()


SPEC = DeviceSpec(
    driver="hwmon",
    summary="Kernel hwmon chip (temperatures, voltages, currents, fans)",
    kind="kernel",
    config=HwmonConfig,
    quantities=("temperature_c", "voltage_v", "current_a", "power_w", "humidity_pct"),
    kernel_poll=KernelPoll(_poll),
    reference="Linux Documentation/hwmon/sysfs-interface.rst",
    publishes=_publishes,
)
