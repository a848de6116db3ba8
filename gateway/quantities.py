"""Every quantity key a reading may carry, with its unit and how Home Assistant shows it.

Keys carry their unit (`temperature_c`), so a payload is self-describing. This
table is the one place that maps a key to its unit and Home Assistant device
class; drivers, discovery and the docs all read it. User-defined keys (`lines`
fields, Modbus registers) get the same treatment from their unit suffix
(`field_quantity`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Quantity:
    key: str
    unit: str | None
    device_class: str | None
    #: Short entity name (Home Assistant shows it after the device name).
    name: str
    #: None: no long-term statistics (averaging the value means nothing).
    state_class: str | None = "measurement"
    icon: str | None = None
    #: Decimals Home Assistant shows when the chip's resolution is not known ...
    precision: int | None = None
    #: ... and at most this many when it is (finer steps than this are noise).
    max_precision: int = 6
    numeric: bool = True
    #: A true/false flag (a Home Assistant binary_sensor), not a number.
    binary: bool = False


_ALL = [
    Quantity("temperature_c", "°C", "temperature", "Temperature", precision=1, max_precision=2),
    Quantity("humidity_pct", "%", "humidity", "Humidity", precision=1, max_precision=1),
    Quantity("pressure_hpa", "hPa", "atmospheric_pressure", "Pressure", precision=1,
             max_precision=2),
    Quantity("illuminance_lx", "lx", "illuminance", "Illuminance", precision=0, max_precision=1),
    Quantity("co2_ppm", "ppm", "carbon_dioxide", "CO₂", precision=0, max_precision=0),
    Quantity("voltage_v", "V", "voltage", "Voltage", precision=3),
    Quantity("bus_voltage_v", "V", "voltage", "Bus voltage", precision=3),
    Quantity("shunt_voltage_v", "V", "voltage", "Shunt voltage", precision=5),
    Quantity("current_a", "A", "current", "Current", precision=3),
    Quantity("power_w", "W", "power", "Power", precision=2),
    Quantity("energy_wh", "Wh", "energy", "Energy", state_class="total_increasing", precision=1),
    Quantity("frequency_hz", "Hz", "frequency", "Frequency", precision=2),
    *[Quantity(f"ain{i}_v", "V", "voltage", f"Analog input {i}", precision=4) for i in range(4)],
    # A mean position is not a place the receiver was: no statistics for lat/lon.
    Quantity("latitude_deg", "°", None, "Latitude", None, "mdi:latitude", precision=6),
    Quantity("longitude_deg", "°", None, "Longitude", None, "mdi:longitude", precision=6),
    Quantity("altitude_m", "m", "distance", "Altitude", precision=1),
    Quantity("satellites", None, None, "Satellites in use", icon="mdi:satellite-variant",
             precision=0),
    # A code (0 none, 1 GPS, 2 DGPS, ...), not an amount: no statistics.
    Quantity("fix_quality", None, None, "Fix quality", None, "mdi:crosshairs-gps", precision=0),
    # GSA: 1 no fix, 2 2D, 3 3D; a code again.
    Quantity("fix_type", None, None, "Fix type", None, "mdi:crosshairs-gps", precision=0),
    Quantity("hdop", None, None, "HDOP", precision=1),
    Quantity("pdop", None, None, "PDOP", precision=1),
    Quantity("vdop", None, None, "VDOP", precision=1),
    Quantity("speed_kn", "kn", "speed", "Speed", precision=1),
    # Angles average on the circle (350° and 10° give 0°, not 180°).
    Quantity("course_deg", "°", None, "Course", "measurement_angle", "mdi:compass", precision=1),
    Quantity("gps_time", None, "timestamp", "UTC date and time", None, numeric=False),
    Quantity("inference_ms", "ms", "duration", "Inference time", precision=2),
    # The Pi's own health (pi_health); flags are true/false.
    Quantity("soc_temperature_c", "°C", "temperature", "SoC temperature", precision=1,
             max_precision=2),
    *[Quantity(key, None, "problem", text, None, numeric=False, binary=True) for key, text in (
        ("under_voltage", "Under-voltage"), ("freq_capped", "ARM frequency capped"),
        ("throttled", "Throttled"), ("soft_temp_limit", "Soft temperature limit"),
        ("under_voltage_since_boot", "Under-voltage since boot"),
        ("freq_capped_since_boot", "Frequency capped since boot"),
        ("throttled_since_boot", "Throttled since boot"),
        ("soft_temp_limit_since_boot", "Soft temperature limit since boot"))],
    Quantity("disk_free_mb", "MB", "data_size", "Free space for the spool", precision=0),
    Quantity("memory_available_mb", "MB", "data_size", "Available memory", precision=0),
    Quantity("load_1m", None, None, "Load (1 min)", icon="mdi:chip", precision=2),
    # GPIO inputs.
    Quantity("closed", None, "opening", "Contact", None, numeric=False, binary=True),
    Quantity("pulses", None, None, "Pulses", icon="mdi:pulse", precision=0),
    Quantity("pulse_rate_hz", "Hz", "frequency", "Pulse rate", precision=3),
    Quantity("pulses_total", None, None, "Pulses total", "total_increasing", "mdi:counter",
             precision=0),
]

QUANTITIES: dict[str, Quantity] = {q.key: q for q in _ALL}


def quantity(key: str) -> Quantity:
    """The quantity for `key`; unknown keys (user-defined fields) are derived from the suffix."""
    q = QUANTITIES.get(key)
    if q is not None:
        return q
    name, _, suffix = key.rpartition("_")
    if name and suffix in UNIT_SUFFIXES:
        return field_quantity(name, suffix)
    return Quantity(key, None, None, _title(key), None, numeric=False)


# ---------------------------------------------------------------- user-defined fields

#: Unit suffix of a user field (`{name: temp, unit: c}` -> `temp_c`) -> the unit HA shows.
#: Suffixes are lower case (config rule), so `c` is °C and `k` is kelvin.
UNIT_SUFFIXES: dict[str, str] = {
    "c": "°C", "degc": "°C", "f": "°F", "degf": "°F", "k": "K",
    "pct": "%", "percent": "%",
    "pa": "Pa", "hpa": "hPa", "kpa": "kPa", "mbar": "mbar", "bar": "bar", "psi": "psi",
    "lx": "lx", "lux": "lx",
    "ppm": "ppm", "ppb": "ppb", "ugm3": "µg/m³",
    "v": "V", "mv": "mV", "kv": "kV", "a": "A", "ma": "mA",
    "w": "W", "kw": "kW", "mw": "mW", "wh": "Wh", "kwh": "kWh", "mwh": "MWh",
    "va": "VA", "var": "var", "hz": "Hz", "khz": "kHz",
    "m": "m", "cm": "cm", "mm": "mm", "km": "km",
    "kn": "kn", "kmh": "km/h", "mps": "m/s",
    "s": "s", "ms": "ms", "min": "min", "h": "h",
    "deg": "°", "dbm": "dBm", "db": "dB",
    "l": "L", "m3": "m³", "lmin": "L/min",
    "g": "g", "kg": "kg", "rpm": "rpm",
}

#: Device class -> the units Home Assistant accepts for it (only the classes a unit can
#: imply or a field may name; see docs/core/entity/sensor "Available device classes").
DEVICE_CLASS_UNITS: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    "temperature": {"°C", "°F", "K"},
    "humidity": {"%"}, "moisture": {"%"}, "battery": {"%"}, "power_factor": {"%"},
    "pressure": {"Pa", "hPa", "kPa", "mbar", "bar", "psi", "cbar", "mmHg", "inHg"},
    "atmospheric_pressure": {"Pa", "hPa", "kPa", "mbar", "bar", "psi", "cbar", "mmHg", "inHg"},
    "illuminance": {"lx"},
    "carbon_dioxide": {"ppm"}, "carbon_monoxide": {"ppm", "ppb", "µg/m³", "mg/m³"},
    "volatile_organic_compounds_parts": {"ppm", "ppb"},
    "pm1": {"µg/m³"}, "pm25": {"µg/m³"}, "pm10": {"µg/m³"},
    "voltage": {"V", "mV", "kV", "µV", "MV"}, "current": {"A", "mA"},
    "power": {"W", "kW", "mW", "MW", "GW", "TW"}, "apparent_power": {"VA", "mVA", "kVA"},
    "reactive_power": {"var", "mvar", "kvar"},
    "energy": {"Wh", "kWh", "MWh", "mWh", "GWh", "TWh", "J", "kJ", "MJ", "GJ"},
    "energy_storage": {"Wh", "kWh", "MWh", "mWh", "GWh", "TWh", "J", "kJ", "MJ", "GJ"},
    "frequency": {"Hz", "kHz", "MHz", "GHz", "mHz"},
    "distance": {"m", "cm", "mm", "km", "mi", "yd", "in", "ft", "nmi"},
    "speed": {"kn", "km/h", "m/s", "mph", "ft/s"}, "wind_speed": {"kn", "km/h", "m/s", "mph"},
    "duration": {"s", "ms", "min", "h", "d", "µs"},
    "signal_strength": {"dB", "dBm"}, "sound_pressure": {"dB", "dBA"},
    "volume": {"L", "m³", "mL"}, "volume_storage": {"L", "m³", "mL"},
    "water": {"L", "m³"}, "gas": {"L", "m³"}, "volume_flow_rate": {"L/min", "m³/h", "L/h"},
    "weight": {"g", "kg", "mg"}, "wind_direction": {"°"},
}.items()}

#: Classes whose statistics are totals, not means (sensor docs, "Long-term statistics").
TOTAL_CLASSES = frozenset({"energy", "gas", "water", "volume"})

_WORDS = re.compile(r"[a-z]+|\d+")


def _words(name: str) -> set[str]:
    return set(_WORDS.findall(name.lower()))


def derive_device_class(name: str, unit: str | None) -> str | None:
    """The device class a field's unit implies, where that is unambiguous (else None)."""
    if unit is None:
        return None
    words = _words(name)
    low = name.lower()
    by_unit = {
        "°C": "temperature", "°F": "temperature", "K": "temperature",
        "Pa": "pressure", "hPa": "pressure", "kPa": "pressure", "mbar": "pressure",
        "bar": "pressure", "psi": "pressure", "lx": "illuminance",
        "V": "voltage", "mV": "voltage", "kV": "voltage", "A": "current", "mA": "current",
        "W": "power", "kW": "power", "mW": "power", "VA": "apparent_power",
        "var": "reactive_power", "Wh": "energy", "kWh": "energy", "MWh": "energy",
        "Hz": "frequency", "kHz": "frequency", "dBm": "signal_strength",
        "m": "distance", "cm": "distance", "mm": "distance", "km": "distance",
        "kn": "speed", "km/h": "speed", "m/s": "speed",
        "s": "duration", "ms": "duration", "min": "duration", "h": "duration",
    }
    if unit in by_unit:
        if by_unit[unit] == "pressure" and words & {"baro", "atm", "atmospheric", "air"}:
            return "atmospheric_pressure"
        return by_unit[unit]
    if unit == "%":
        if low.startswith(("hum", "rh")) or "humidity" in low:
            return "humidity"
        if "moist" in low or "soil" in words:
            return "moisture"
        if low.startswith("bat"):
            return "battery"
        return None
    if unit == "ppm":
        if "co2" in low:
            return "carbon_dioxide"
        if "voc" in low:
            return "volatile_organic_compounds_parts"
        return None
    if unit == "µg/m³":
        compact = low.replace("_", "").replace(".", "")
        for tag, cls in (("pm25", "pm25"), ("pm10", "pm10"), ("pm1", "pm1")):
            if compact.startswith(tag):
                return cls
        return None
    if unit == "°" and low.startswith("wind"):
        return "wind_direction"
    return None


def _is_direction(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in ("dir", "heading", "course", "bearing", "azimuth", "angle"))


def field_quantity(name: str, unit_suffix: str | None, *, numeric: bool = True,
                   device_class: str | None = None, derive: bool = True) -> Quantity:
    """A user-defined field as a quantity: unit from its suffix, device class from the unit.

    `device_class` overrides the derived class; `derive=False` (config `device_class: none`)
    keeps it a plain sensor.
    """
    key = f"{name}_{unit_suffix}" if unit_suffix else name
    title = _title(name)
    if not numeric:
        return Quantity(key, None, None, title, None, numeric=False)
    unit = UNIT_SUFFIXES.get(unit_suffix, unit_suffix) if unit_suffix else None
    cls = device_class if device_class is not None else (
        derive_device_class(name, unit) if derive else None)
    state_class: str | None = "measurement"
    if cls in TOTAL_CLASSES:
        state_class = "total_increasing"
    elif unit == "°":
        low = name.lower()
        state_class = None if low.startswith(("lat", "lon")) else (
            "measurement_angle" if _is_direction(name) or cls == "wind_direction"
            else "measurement")
    return Quantity(key, unit, cls, title, state_class)


def _title(name: str) -> str:
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else name


def decimals(resolution: float) -> int:
    """Decimals needed to show steps of `resolution` (0.0625 -> 2, 125e-6 -> 4, 1 -> 0)."""
    if resolution <= 0 or not math.isfinite(resolution):
        return 0
    return max(0, math.ceil(-math.log10(resolution) - 1e-9))


def with_precision(q: Quantity, resolution: float | None) -> Quantity:
    """`q` with the precision its chip's `resolution` supports (capped by max_precision)."""
    if resolution is None or not q.numeric:
        return q
    return replace(q, precision=min(decimals(resolution), q.max_precision))


def check_device_class(device_class: str, unit_suffix: str | None) -> None:
    """A configured `device_class` for a field with `unit_suffix`; ValueError if HA refuses it."""
    if device_class not in DEVICE_CLASS_UNITS:
        raise ValueError(f"unknown device class {device_class!r} (one of: "
                         f"{', '.join(sorted(DEVICE_CLASS_UNITS))}, or none)")
    unit = UNIT_SUFFIXES.get(unit_suffix, unit_suffix) if unit_suffix else None
    allowed = DEVICE_CLASS_UNITS[device_class]
    if unit not in allowed:
        units = ", ".join(sorted(s for s, u in UNIT_SUFFIXES.items() if u in allowed))
        raise ValueError(f"device class {device_class} needs a unit Home Assistant accepts for it "
                         f"(unit: one of {units}), not {unit_suffix or 'no unit'}")
