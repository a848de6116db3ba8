"""1-Wire temperature probes (DS18B20, DS18S20, DS1822, DS1825) through the kernel's `w1_therm`.

The kernel drives the 1-Wire bus (`dtoverlay=w1-gpio`); this module reads its sysfs
files (Documentation/w1/slaves/w1_therm.rst):

- `/sys/bus/w1/devices/<family>-<serial>/w1_slave`: two lines; the first has the nine
  scratchpad bytes, `crc=XX` and `YES`/`NO`, the second the same bytes and
  `t=<millidegrees Celsius>`. Each read starts a conversion (750 ms at 12 bits),
  unless a bulk conversion is pending.
- `/sys/bus/w1/devices/w1_bus_masterN/therm_bulk_read`: writing `trigger` starts one
  conversion on every probe of that bus at once; reading it gives -1 while a probe
  converts, 1 when done and not yet read, 0 when nothing is pending. The next
  `w1_slave` read of each probe then returns that conversion without starting another.

So a poll of N probes costs one conversion time, not N. The CRC is checked here
again (not only the kernel's `YES`), and a probe that answers its power-on value
(85.000 °C, scratchpad 0x0550: the conversion never ran, e.g. on a weak supply)
is a fault, not a reading.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

from gateway.catalog.spec import DeviceSpec, KernelPoll, SysfsEnv, UserField
from gateway.config.model import DeviceBase
from gateway.config.schema import Field, model_validator
from gateway.config.types import Name
from gateway.drivers.crc import crc8_maxim
from gateway.drivers.errors import CrcError, DriverError

log = logging.getLogger("gateway.drivers.w1_therm")

#: Family codes w1_therm serves (w1_therm.rst, "Supported family codes").
FAMILIES = {0x10: "DS18S20", 0x22: "DS1822", 0x28: "DS18B20", 0x3B: "DS1825", 0x42: "DS28EA00"}
#: DS18B20 datasheet, "Operation — Measuring Temperature": the power-on reset value of the
#: temperature register is +85 °C (0x0550).
POWER_ON_RAW = 0x0550
#: Where the w1 core lists slaves and bus masters.
W1_DEVICES = Path("sys/bus/w1/devices")


class PowerOnValue(DriverError):
    """The probe answered its power-on value: no conversion took place."""


class ProbeMissing(DriverError):
    """A configured probe is not on the bus (unplugged, broken wire)."""


def family_of(probe_id: str) -> int | None:
    head, sep, serial = probe_id.partition("-")
    if not sep or len(serial) != 12:
        return None
    try:
        return int(head, 16)
    except ValueError:
        return None


def parse_w1_slave(text: str, family: int) -> float:
    """Degrees Celsius from a `w1_slave` file, after checking its CRC and power-on value."""
    lines = text.strip().splitlines()
    if len(lines) != 2 or "crc=" not in lines[0] or "t=" not in lines[1]:
        raise DriverError(f"unexpected w1_slave contents: {text.strip()[:80]!r}")
    try:
        scratch = bytes(int(b, 16) for b in lines[0].split(":")[0].split())
    except ValueError:
        raise DriverError(f"unexpected w1_slave contents: {lines[0][:80]!r}") from None
    if len(scratch) != 9:
        raise DriverError(f"expected 9 scratchpad bytes, got {len(scratch)}")
    if crc8_maxim(scratch) != 0 or not lines[0].rstrip().endswith("YES"):
        raise CrcError(f"scratchpad CRC mismatch ({lines[0].strip()})")
    raw = scratch[0] | scratch[1] << 8
    if family != 0x10 and raw == POWER_ON_RAW:
        raise PowerOnValue("85.000 °C power-on value: the conversion did not run "
                           "(supply too weak or parasite power without a strong pull-up)")
    try:
        milli = int(lines[1].rsplit("t=", 1)[1])
    except ValueError:
        raise DriverError(f"unexpected temperature field: {lines[1][:80]!r}") from None
    if family == 0x10:
        return milli / 1000.0  # DS18S20: 9 bits plus COUNT_REMAIN; the kernel's t= has it all
    # DS18B20 datasheet, Table 1 (Temperature/Data Relationship): a 16-bit two's complement
    # count of 1/16 °C. The kernel's t= truncates that to whole millidegrees (25.0625 ->
    # 25062), so the bytes are the value, and t= must agree with them.
    signed = raw - 0x10000 if raw & 0x8000 else raw
    if abs(signed * 1000 / 16 - milli) > 1:
        raise DriverError(f"t={milli} does not match the scratchpad ({signed}/16 °C)")
    return signed / 16.0


class W1Bus:
    """The probes the kernel found, read with one bulk conversion per poll where it can."""

    def __init__(self, root: Path = Path("/"), settle: float = 1.0) -> None:
        self.devices = root / W1_DEVICES
        #: Longest wait for a bulk conversion (750 ms at 12 bits, plus margin).
        self.settle = settle

    def probe_ids(self) -> list[str]:
        """Ids of the temperature probes on every bus, sorted."""
        try:
            names = os.listdir(self.devices)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, "no 1-Wire bus: add 'dtoverlay=w1-gpio' to /boot/firmware/config.txt "
                "and reboot", str(self.devices)) from None
        return sorted(n for n in names if family_of(n) in FAMILIES)

    def bulk_convert(self) -> bool:
        """Start one conversion on every bus that supports it; True if any did."""
        started = []
        for master in sorted(self.devices.glob("w1_bus_master*")):
            bulk = master / "therm_bulk_read"
            if bulk.exists():
                bulk.write_text("trigger\n")
                started.append(bulk)
        deadline = time.monotonic() + self.settle
        for bulk in started:
            # -1 while any probe still converts (w1_therm.rst). The kernel's write already
            # waited for the conversion time in practice; this covers slow parasite buses.
            while bulk.read_text().strip() == "-1" and time.monotonic() < deadline:
                time.sleep(0.05)
        return bool(started)

    def read(self, probe_id: str) -> float:
        family = family_of(probe_id)
        if family not in FAMILIES or family is None:
            raise DriverError(f"{probe_id} is not a temperature probe w1_therm serves")
        path = self.devices / probe_id / "w1_slave"
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ProbeMissing(f"probe {probe_id} is not on the bus ({path} is gone)") from None
        return parse_w1_slave(text, family)


# -- the catalog entry ------------------------------------------------------------


_PROBE_ID = r"^(10|22|28|3b|42)-[0-9a-f]{12}$"


class DS18B20Config(DeviceBase):
    driver: Literal["ds18b20"]
    sensor: str | None = Field(
        default=None, pattern=_PROBE_ID,
        description="One probe by id (28-0316a2795bff): published as temperature_c.",
    )
    sensors: Literal["all"] | dict[Name, str] | None = Field(
        default=None,
        description="Several probes: {name: id} -> <name>_temperature_c, or `all` (every probe "
                    "found at each poll -> t<id>_temperature_c).",
    )
    bulk: bool = Field(
        default=True,
        description="One conversion for the whole bus per poll (therm_bulk_read) where the kernel has it.",
    )

    @model_validator(mode="after")
    def _one_way(self) -> DS18B20Config:
        if (self.sensor is None) == (self.sensors is None):
            raise ValueError("give either `sensor: ID` or `sensors: {name: ID, ...} | all`")
        if isinstance(self.sensors, dict):
            bad = [i for i in self.sensors.values() if not re.match(_PROBE_ID, i)]
            if bad:
                raise ValueError(f"not a w1_therm probe id: {', '.join(bad)} (expected e.g. 28-0316a2795bff)")
        return self


def probe_key(probe_id: str) -> str:
    return "t" + probe_id.replace("-", "_")


class ProbeSet:
    """One poll: a bulk conversion, then each probe; a failing probe leaves the others."""

    def __init__(self, cfg: DS18B20Config, env: SysfsEnv) -> None:
        self.cfg = cfg
        self.counters = env.counters
        self.bus = W1Bus(env.root)
        self._failing: dict[str, str] = {}

    def targets(self) -> dict[str, str]:
        cfg = self.cfg
        if cfg.sensor is not None:
            return {"temperature_c": cfg.sensor}
        if isinstance(cfg.sensors, dict):
            return {f"{name}_temperature_c": pid for name, pid in cfg.sensors.items()}
        found = self.bus.probe_ids()
        if not found:
            raise FileNotFoundError(errno.ENOENT, "no temperature probe on the 1-Wire bus",
                                    str(self.bus.devices))
        return {f"{probe_key(pid)}_temperature_c": pid for pid in found}

    def read(self) -> dict[str, Any]:
        targets = self.targets()
        if self.cfg.bulk:
            self.bus.bulk_convert()
        out: dict[str, Any] = {}
        errors: list[BaseException] = []
        for key, pid in targets.items():
            try:
                out[key] = round(self.bus.read(pid), 4)
            except (DriverError, OSError) as exc:
                errors.append(exc)
                why = f"{type(exc).__name__}: {exc}"
                self.counters["probe_errors"] = self.counters.get("probe_errors", 0) + 1
                if self._failing.get(pid) != why:
                    log.warning("%s: probe %s: %s", self.cfg.name, pid, why)
                    self._failing[pid] = why
                continue
            if self._failing.pop(pid, None) is not None:
                log.info("%s: probe %s recovered", self.cfg.name, pid)
        if errors and not out:
            raise errors[0]
        return out


def _user_fields(cfg: DS18B20Config) -> tuple[UserField, ...]:
    """The keys given the config; `sensors: all` is only known at run time (none announced)."""
    step = 0.0625  # 12-bit resolution: 1/16 °C (DS18B20 datasheet, Table 1)
    if cfg.sensor is not None:
        return (UserField("temperature", "c", device_class="temperature", resolution=step),)
    if isinstance(cfg.sensors, dict):
        return tuple(UserField(f"{name}_temperature", "c", device_class="temperature", resolution=step)
                     for name in cfg.sensors)
    return ()


def _poll(cfg: DS18B20Config, env: SysfsEnv) -> Any:
    return ProbeSet(cfg, env).read


SPEC = DeviceSpec(
    driver="ds18b20",
    summary="1-Wire temperature probes (DS18B20/DS18S20/DS1822) via the kernel's w1_therm",
    kind="kernel",
    config=DS18B20Config,
    quantities=("temperature_c",),
    kernel_poll=KernelPoll(_poll),
    reference="Maxim DS18B20 datasheet; Linux Documentation/w1/slaves/w1_therm.rst",
    manufacturer="Analog Devices (Maxim Integrated)",
    model="DS18B20 1-Wire thermometer",
    user_fields=_user_fields,
)
