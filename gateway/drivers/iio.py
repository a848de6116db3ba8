"""Sensors the kernel's Industrial I/O subsystem drives (DHT11/DHT22 overlay, BME280, ADCs...).

Read from `/sys/bus/iio/devices/iio:deviceN/` (Documentation/ABI/testing/sysfs-bus-iio):
a channel `in_<type>[N][_<modifier>]` has either a processed `_input` value, or
`_raw` with optional `_scale` and `_offset`, processed = (raw + offset) × scale.
The ABI fixes each type's unit; `CHANNELS` converts it to the gateway's quantity key.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

from gateway.catalog.spec import DeviceSpec, KernelPoll, SysfsEnv
from gateway.config.model import DeviceBase
from gateway.config.schema import Field, model_validator
from gateway.config.types import Duration
from gateway.drivers.errors import DriverError
from gateway.drivers.sysfs import find_by_name

IIO_DEVICES = Path("sys/bus/iio/devices")


# A NamedTuple: a sensors-only daemon loads drivers (why that matters: gateway.slots).
class Channel(NamedTuple):
    key: str  # quantity key for channel index 0 / no index
    factor: float  # ABI unit -> the key's unit


#: sysfs-bus-iio: temperature in milli °C; relative humidity in milli percent; pressure
#: in kPa; illuminance in lux; voltage in mV; current in mA; power in mW; a
#: concentration in percent (1 % = 10,000 ppm).
CHANNELS: dict[str, Channel] = {
    "temp": Channel("temperature_c", 1e-3),
    "humidityrelative": Channel("humidity_pct", 1e-3),
    "pressure": Channel("pressure_hpa", 10.0),
    "illuminance": Channel("illuminance_lx", 1.0),
    "voltage": Channel("voltage_v", 1e-3),
    "current": Channel("current_a", 1e-3),
    "power": Channel("power_w", 1e-3),
    "concentration_co2": Channel("co2_ppm", 1e4),
}

_ATTR = re.compile(r"^in_([a-z]+)(\d*)(?:_([a-z0-9]+))?_(input|raw)$")


def channel_key(kind: str, index: str, modifier: str | None) -> tuple[str, Channel] | None:
    """The quantity key of a channel (`in_temp_input` -> temperature_c, `in_voltage1` -> voltage1_v)."""
    ch = CHANNELS.get(f"{kind}_{modifier}") if modifier else None
    if ch is None:
        ch = CHANNELS.get(kind)
        if ch is None or (modifier and modifier not in ("ambient", "object")):
            return None
        if modifier:  # in_temp_ambient, in_temp_object (contact-less thermometers)
            stem, _, unit = ch.key.rpartition("_")
            return f"{modifier}_{stem}_{unit}", ch
    if index:
        stem, _, unit = ch.key.rpartition("_")
        return f"{stem}{index}_{unit}", ch
    return ch.key, ch


class IioDevice:
    """One IIO device: every channel it offers that has a quantity key."""

    def __init__(self, directory: Path, read_text: Callable[[Path], str] = Path.read_text) -> None:
        self.directory = directory
        self._read_text = read_text
        self.channels: dict[str, Callable[[], float]] = {}
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "IIO device is gone", str(directory)) from None
        for name in names:
            m = _ATTR.match(name)
            if m is None:
                continue
            kind, index, modifier, form = m.groups()
            found = channel_key(kind, index, modifier)
            if found is None:
                continue
            key, ch = found
            if key in self.channels and form == "raw":
                continue  # the processed _input wins over _raw
            self.channels[key] = self._reader(name, form, ch.factor)

    def _number(self, path: Path) -> float:
        return float(self._read_text(path).strip())

    def _reader(self, attr: str, form: str, factor: float) -> Callable[[], float]:
        path = self.directory / attr
        if form == "input":
            return lambda: self._number(path) * factor
        stem = attr[: -len("_raw")]
        scale = self._shared(stem, "scale", 1.0)
        offset = self._shared(stem, "offset", 0.0)
        return lambda: (self._number(path) + offset) * scale * factor

    def _shared(self, stem: str, what: str, default: float) -> float:
        # The ABI allows _scale/_offset per channel (in_voltage0_scale) or per type (in_voltage_scale).
        kind = re.sub(r"\d+$", "", stem)
        for name in (f"{stem}_{what}", f"{kind}_{what}"):
            p = self.directory / name
            if p.exists():
                return self._number(p)
        return default

    def read(self) -> dict[str, float]:
        if not self.channels:
            raise DriverError(f"{self.directory} has no channel with a known unit")
        return {key: round(read(), 6) for key, read in self.channels.items()}


def find_device(root: Path, name: str | None = None, device: str | None = None) -> Path:
    """`iio:deviceN` by its directory name, or the first whose `name` file is `name`."""
    base = root / IIO_DEVICES
    if device is not None:
        path = base / device
        if not path.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such IIO device", str(path))
        return path
    found = find_by_name(base, name)
    if found is not None:
        return found
    hint = " (for a DHT11/DHT22 add 'dtoverlay=dht11,gpiopin=4' to /boot/firmware/config.txt)" \
        if name in ("dht11", "dht22") else ""
    raise FileNotFoundError(errno.ENOENT, f"no IIO device named {name!r}{hint}", str(base))


def read_device(root: Path, name: str | None, device: str | None) -> dict[str, float]:
    """Find and read in one go (the device may come and go with its overlay or module)."""
    return IioDevice(find_device(root, name, device)).read()


# -- the catalog entry ------------------------------------------------------------

class IioConfig(DeviceBase):
    driver: Literal["iio"]
    chip: str | None = Field(
        default=None, min_length=1,
        description="The device's `name` in sysfs (dht11 for DHT11/DHT22, bme280, ads1015...).",
    )
    device: str | None = Field(
        default=None, pattern=r"^iio:device\d+$",
        description="Or the directory, iio:deviceN (numbers can change between boots: prefer chip).",
    )
    retries: int | None = Field(
        default=None, ge=0, le=10,
        description="Retries of a read that fails with EIO/ETIMEDOUT within one poll "
                    "(default 3 for dht11, else 0).",
    )
    retry_delay: Duration = Field(default=2.0, description="Wait between those retries (DHT: 2 s).")

    @model_validator(mode="after")
    def _one(self) -> IioConfig:
        if (self.chip is None) == (self.device is None):
            raise ValueError("give either `chip: NAME` or `device: iio:deviceN`")
        return self


def _poll(cfg: IioConfig, env: SysfsEnv) -> Callable[[], dict[str, Any]]:
    def read() -> dict[str, Any]:
        # Found again on every poll: the overlay's device may come and go (module reload).
        return IioDevice(find_device(env.root, cfg.chip, cfg.device), read_text=env.read_text).read()

    return read


#: errno values the DHT driver (drivers/iio/humidity/dht11.c) returns for a bad read.
DHT_ROUTINE = frozenset({errno.EIO, errno.ETIMEDOUT, errno.EAGAIN})


def _publishes(cfg: IioConfig) -> tuple[str, ...]:
    """Known ahead only for the DHT overlay; other IIO devices' channels are found at run time."""
    return ("temperature_c", "humidity_pct") if cfg.chip == "dht11" else ()


SPEC = DeviceSpec(
    driver="iio",
    summary="Kernel IIO sensor (DHT11/DHT22 overlay, kernel-driven chips)",
    kind="kernel",
    config=IioConfig,
    quantities=("temperature_c", "humidity_pct", "pressure_hpa", "illuminance_lx", "co2_ppm"),
    kernel_poll=KernelPoll(
        _poll, routine=DHT_ROUTINE,
        retries=lambda cfg: cfg.retries if cfg.retries is not None else (3 if cfg.chip == "dht11" else 0),
        retry_delay=lambda cfg: cfg.retry_delay,
    ),
    reference="Linux Documentation/ABI/testing/sysfs-bus-iio",
    publishes=_publishes,
)
