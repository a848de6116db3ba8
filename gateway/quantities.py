"""Every quantity key a reading may carry, with its unit.

Keys carry their unit (`temperature_c`), so a payload is self-describing. This
table is the one place that maps a key to its unit and Home Assistant device
class; drivers, discovery and the docs all read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    key: str
    unit: str | None
    device_class: str | None
    description: str
    state_class: str | None = "measurement"
    icon: str | None = None


_ALL = [
    Quantity("temperature_c", "°C", "temperature", "Temperature"),
    Quantity("humidity_pct", "%", "humidity", "Relative humidity"),
    Quantity("pressure_hpa", "hPa", "atmospheric_pressure", "Barometric pressure"),
    Quantity("illuminance_lx", "lx", "illuminance", "Illuminance"),
    Quantity("co2_ppm", "ppm", "carbon_dioxide", "CO2 concentration"),
    Quantity("voltage_v", "V", "voltage", "Voltage"),
    Quantity("bus_voltage_v", "V", "voltage", "Bus voltage"),
    Quantity("shunt_voltage_v", "V", "voltage", "Shunt voltage"),
    Quantity("current_a", "A", "current", "Current"),
    Quantity("power_w", "W", "power", "Power"),
    Quantity("energy_wh", "Wh", "energy", "Energy", state_class="total_increasing"),
    Quantity("frequency_hz", "Hz", "frequency", "Frequency"),
    *[Quantity(f"ain{i}_v", "V", "voltage", f"Analog input {i}") for i in range(4)],
    Quantity("latitude_deg", "°", None, "Latitude", icon="mdi:latitude"),
    Quantity("longitude_deg", "°", None, "Longitude", icon="mdi:longitude"),
    Quantity("altitude_m", "m", "distance", "Altitude above mean sea level"),
    Quantity("satellites", None, None, "Satellites in use", icon="mdi:satellite-variant"),
    Quantity("fix_quality", None, None, "GPS fix quality (0 = none)", icon="mdi:crosshairs-gps"),
    Quantity("hdop", None, None, "Horizontal dilution of precision"),
    Quantity("speed_kn", "kn", "speed", "Speed over ground"),
    Quantity("course_deg", "°", None, "Course over ground", icon="mdi:compass"),
    Quantity("gps_time", None, "timestamp", "GPS UTC date and time", state_class=None),
    Quantity("inference_ms", "ms", "duration", "Inference time"),
]

QUANTITIES: dict[str, Quantity] = {q.key: q for q in _ALL}


def quantity(key: str) -> Quantity:
    """The quantity for `key`; unknown keys (from user-defined line fields) get a bare entry."""
    q = QUANTITIES.get(key)
    if q is not None:
        return q
    return Quantity(key, _unit_from_suffix(key), None, key.replace("_", " "))


_SUFFIX_UNITS = {
    "_c": "°C", "_pct": "%", "_hpa": "hPa", "_lx": "lx", "_v": "V", "_a": "A", "_w": "W",
    "_wh": "Wh", "_kwh": "kWh", "_hz": "Hz", "_m": "m", "_ppm": "ppm", "_deg": "°", "_kn": "kn",
    "_ms": "ms", "_s": "s",
}


def _unit_from_suffix(key: str) -> str | None:
    for suffix, unit in sorted(_SUFFIX_UNITS.items(), key=lambda kv: -len(kv[0])):
        if key.endswith(suffix):
            return unit
    return None
