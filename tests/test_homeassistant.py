"""Home Assistant MQTT discovery: payloads valid per HA's documented rules, retained, removed.

The tables below are written from Home Assistant's documentation and source, not from
the gateway's code (so the gateway's own unit/class tables are checked against them):

- MQTT discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
  topic `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`, node_id and
  object_id limited to `[a-zA-Z0-9_-]`; a device block needs `identifiers` or
  `connections`; entities with a device need a `unique_id`; the `origin` block
  (`name`, `sw_version`, `support_url`) is recommended for single-component discovery.
  Naming: the friendly name is "<device name> <entity name>"; `name: null` makes an
  entity the device's main feature (it shows the device name alone).
- MQTT sensor (https://www.home-assistant.io/integrations/sensor.mqtt/, HA 2026.x): the
  configuration variables in SENSOR_KEYS, incl. `suggested_display_precision`,
  `expire_after`, `entity_category`, `default_entity_id` (2025.10, replaces `object_id`).
- Sensor device classes and the units each accepts: developers.home-assistant.io
  docs/core/entity/sensor, "Available device classes" (HA_UNITS, micro sign U+00B5 as in
  homeassistant/const.py).
- State classes: same page, "Available state classes": measurement, measurement_angle
  (added in HA 2025.4, core PR #138453 / developers PR #2624), total, total_increasing.
  Which state classes each device class allows: homeassistant/components/sensor/const.py
  DEVICE_CLASS_STATE_CLASSES (HA 2025.4+), and STATE_CLASS_UNITS: measurement_angle needs
  the unit "°" (validated by the MQTT sensor since HA 2025.6, core PR #145648).
- Long-term statistics: a sensor with a state class is numeric and gets statistics (same
  page, "Long-term Statistics"); timestamp/date/enum sensors take no unit and no state
  class.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import quantities_for, spec_for, specs
from gateway.config import ConfigError, parse_config
from gateway.config.model import I2CDevice
from gateway.homeassistant import Discovery, device_keys, entity_names, expire_after
from gateway.quantities import QUANTITIES, Quantity
from tests.support import GatewayProcess, Mosquitto, Subscriber, retained, write_config

_ENERGY = {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal",
           "Gcal"}
_PRESSURE = {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"}
# Device class -> units HA accepts for it (developers docs, sensor entity, device classes).
HA_UNITS: dict[str, set[str]] = {
    "apparent_power": {"mVA", "VA", "kVA"},
    "aqi": set(),
    "atmospheric_pressure": _PRESSURE | {"inH₂O"},
    "battery": {"%"},
    "carbon_dioxide": {"ppm"},
    "carbon_monoxide": {"ppb", "ppm", "µg/m³", "mg/m³"},
    "current": {"A", "mA"},
    "data_size": {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
                  "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"},
    "data_rate": {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "KiB/s",
                  "MiB/s", "GiB/s"},
    "distance": {"km", "m", "cm", "mm", "mi", "nmi", "yd", "in"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "energy": _ENERGY,
    "energy_storage": _ENERGY,
    "frequency": {"mHz", "Hz", "kHz", "MHz", "GHz"},
    "gas": {"L", "m³", "ft³", "CCF", "MCF"},
    "humidity": {"%"},
    "illuminance": {"lx"},
    "moisture": {"%"},
    "pm1": {"µg/m³"},
    "pm25": {"µg/m³"},
    "pm10": {"µg/m³"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW"},
    "power_factor": {"%"},
    "pressure": _PRESSURE | {"mPa"},
    "reactive_power": {"mvar", "var", "kvar"},
    "signal_strength": {"dB", "dBm"},
    "sound_pressure": {"dB", "dBA"},
    "speed": {"ft/s", "in/d", "in/h", "in/s", "km/h", "kn", "m/s", "mph", "mm/d", "mm/s"},
    "temperature": {"°C", "°F", "K"},
    "volatile_organic_compounds_parts": {"ppm", "ppb"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "volume": {"L", "mL", "gal", "fl. oz.", "m³", "ft³", "CCF", "MCF"},
    "volume_flow_rate": {"m³/h", "m³/min", "m³/s", "ft³/min", "L/h", "L/min", "L/s", "gal/d",
                         "gal/h", "gal/min", "mL/s"},
    "volume_storage": {"L", "mL", "gal", "fl. oz.", "m³", "ft³", "CCF", "MCF"},
    "water": {"L", "gal", "m³", "ft³", "CCF", "MCF"},
    "weight": {"kg", "g", "mg", "µg", "oz", "lb", "st"},
    "wind_direction": {"°"},
    "wind_speed": {"ft/s", "km/h", "kn", "m/s", "mph"},
}
# Non-numeric classes: the state is text (ISO 8601 for timestamp); no unit, no state_class.
HA_TEXT_CLASSES = {"timestamp", "date", "enum"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
_M, _T = {"measurement"}, {"total", "total_increasing"}
# sensor/const.py DEVICE_CLASS_STATE_CLASSES (classes absent here allow every state class).
HA_STATE_CLASSES: dict[str, set[str]] = {
    **{c: _M for c in ("apparent_power", "aqi", "atmospheric_pressure", "battery",
                       "carbon_dioxide", "carbon_monoxide", "current", "data_rate", "frequency",
                       "humidity", "illuminance", "moisture", "pm1", "pm10", "pm25",
                       "power_factor", "power", "pressure", "reactive_power", "signal_strength",
                       "sound_pressure", "speed", "temperature",
                       "volatile_organic_compounds_parts", "voltage", "volume_storage",
                       "volume_flow_rate", "wind_speed", "energy_storage")},
    "energy": _T, "gas": _T, "volume": _T, "water": _T,
    "weight": _M | _T, "wind_direction": {"measurement_angle"},
}
# sensor/const.py STATE_CLASS_UNITS: measurement_angle is for angles in degrees only.
HA_STATE_CLASS_UNITS = {"measurement_angle": {"°"}}
SENSOR_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category",
    "entity_picture", "expire_after", "force_update", "icon", "json_attributes_template",
    "json_attributes_topic", "last_reset_value_template", "name", "object_id",
    "default_entity_id", "options", "origin", "payload_available", "payload_not_available",
    "platform", "qos", "state_class", "state_topic", "suggested_display_precision",
    "unique_id", "unit_of_measurement", "value_template",
}
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
ID = re.compile(r"^[a-zA-Z0-9_-]+$")
TEMPLATE_KEY = re.compile(r"^\{\{ value_json\.([A-Za-z_][A-Za-z0-9_]*) \}\}$")


def words(text: str) -> set[str]:
    """Words of a name, case-folded; "CO₂" and "co2" are the same word; numbers are not words."""
    return set(re.findall(r"[a-z][a-z0-9]*", text.lower().replace("₂", "2")))


def every_driver_config(discovery: bool = True) -> str:
    """One device of every driver in the catalog, each with valid minimal keys."""
    lines = ["gateway: {id: gh-1}", "mqtt: {host: 127.0.0.1}",
             f"homeassistant: {{discovery: {str(discovery).lower()}}}",
             "inference: {enabled: true, name: camera}", "devices:"]
    for i, (name, spec) in enumerate(sorted(specs().items())):
        dev = f"  - {{name: d-{name}, driver: {name}, interval: 10s"
        if spec.kind == "i2c":
            addr = spec.probe.addresses[0] if spec.probe else 0x40
            dev += f", bus: {i}, address: {addr}"
        elif spec.kind == "serial":
            dev += f", port: /dev/ttyUSB{i}"
        if name == "lines":
            dev = dev.replace(", interval: 10s", "")
            dev += ", format: csv, fields: [{name: temp, unit: c}, {name: note, type: str}]"
        if name == "modbus_rtu":
            dev += ", registers: [{name: voltage, address: 0, unit: v, scale: 0.1}]"
        dev += {"ds18b20": ", sensor: 28-0316a2795bff", "iio": ", chip: dht11",
                "hwmon": ", chip: cpu_thermal", "gpio_contact": f", line: {i}, device_class: door",
                "pulse_counter": f", line: {i}"}.get(name, "")
        lines.append(dev + "}")
    return "\n".join(lines) + "\n"


# https://www.home-assistant.io/integrations/binary_sensor/ (device classes, 2026.11).
HA_BINARY_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
}
# https://www.home-assistant.io/integrations/binary_sensor.mqtt/ (configuration variables).
BINARY_SENSOR_KEYS = (SENSOR_KEYS - {"state_class", "unit_of_measurement", "last_reset_value_template",
                                     "suggested_display_precision", "options"}) | {
    "payload_on", "payload_off", "off_delay"}


def check_binary_payload(topic: str, body: dict[str, Any], status: str) -> None:
    assert set(body) <= BINARY_SENSOR_KEYS, set(body) - BINARY_SENSOR_KEYS
    assert body.get("device_class") in HA_BINARY_CLASSES | {None}, topic
    assert (body["payload_on"], body["payload_off"]) == ("ON", "OFF")
    assert body["availability_topic"] == status


def check_payload(topic: str, body: dict[str, Any], prefix: str = "homeassistant",
                  status: str = "gateway/gh-1/status") -> None:
    """Everything HA checks (or silently gets wrong) for one sensor config."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[1] == "binary_sensor":
        check_binary_payload(topic, body, status)
        return
    assert len(parts) == 5 and parts[0] == prefix and parts[1] == "sensor" and parts[4] == "config"
    assert ID.match(parts[2]) and ID.match(parts[3]), topic
    assert set(body) <= SENSOR_KEYS, set(body) - SENSOR_KEYS
    assert body["state_topic"] and "+" not in body["state_topic"] and "#" not in body["state_topic"]
    assert body["unique_id"] and (body["name"] is None or isinstance(body["name"], str))
    dev = body["device"]
    assert set(dev) <= DEVICE_KEYS, set(dev) - DEVICE_KEYS
    assert dev["identifiers"] and all(isinstance(i, str) for i in dev["identifiers"])
    assert isinstance(dev["name"], str) and dev["name"]
    assert set(body["origin"]) <= ORIGIN_KEYS and body["origin"]["name"]
    cls = body.get("device_class")
    unit = body.get("unit_of_measurement")
    sc = body.get("state_class")
    if cls in HA_TEXT_CLASSES:
        assert unit is None and sc is None, f"{topic}: {cls} takes no unit/state_class"
        assert "suggested_display_precision" not in body, f"{topic}: {cls} is not a number"
    elif cls is not None:
        assert cls in HA_UNITS, f"{topic}: {cls} is not a sensor device class"
        if HA_UNITS[cls]:
            assert unit in HA_UNITS[cls], f"{topic}: HA does not accept {unit!r} for {cls}"
    if sc is not None:
        assert sc in STATE_CLASSES, f"{topic}: no state class {sc!r}"
        if cls in HA_STATE_CLASSES:
            assert sc in HA_STATE_CLASSES[cls], f"{topic}: {cls} does not allow {sc}"
        if sc in HA_STATE_CLASS_UNITS:
            assert unit in HA_STATE_CLASS_UNITS[sc], f"{topic}: {sc} needs unit °, not {unit!r}"
    # A number (it has a unit or a state class) says how many decimals to show; without it
    # HA rounds by unit (0.0297 V shows as "0 V").
    if (unit is not None or sc is not None) and cls not in HA_TEXT_CLASSES:
        precision = body.get("suggested_display_precision")
        assert isinstance(precision, int) and 0 <= precision <= 9, f"{topic}: no precision"
    if "expire_after" in body:
        assert isinstance(body["expire_after"], int) and body["expire_after"] > 0
    if body["name"] is not None:  # "<device> <entity>" must not say a word twice
        assert not words(body["name"]) & words(dev["name"]), (dev["name"], body["name"])
    assert body["availability_topic"] == status
    # What the publisher really sends on the status topic (and as its will).
    assert (body["payload_available"], body["payload_not_available"]) == ("online", "offline")


def template_key(body: dict[str, Any]) -> str:
    m = TEMPLATE_KEY.match(body["value_template"])
    assert m, body["value_template"]
    return m.group(1)


def test_every_quantity_of_every_driver_is_a_valid_sensor(tmp_path: Path) -> None:
    cfg = parse_config(every_driver_config())
    d = Discovery(cfg, record=tmp_path / "rec.json")
    anns = d.announcements()
    by_topic = {a.topic: a.payload for a in anns}
    assert len(by_topic) == len(anns)  # one config per quantity, no clashes
    assert len({p["unique_id"] for p in by_topic.values()}) == len(anns)
    for topic, body in by_topic.items():
        check_payload(topic, body)
    # Each device's quantities, read from its flat JSON reading topic.
    for dev in cfg.devices:
        spec = spec_for(dev.driver)
        keys = device_keys(dev)
        assert keys, dev.driver
        for key in keys:
            component = "binary_sensor" if QUANTITIES.get(key, None) is not None and \
                QUANTITIES[key].binary else "sensor"
            body = by_topic[f"homeassistant/{component}/gh-1_{dev.name}/{key}/config"]
            if component == "binary_sensor":
                assert body["value_template"].startswith("{{ 'ON' if ")
                continue
            assert body["state_topic"] == f"gateway/gh-1/{dev.name}"
            assert template_key(body) == key
            assert body["device"]["via_device"] == "edge-gateway_gh-1"
            assert body["device"]["name"] == f"gh-1 {dev.name}"  # the gateway keeps them apart
            assert body["device"].get("manufacturer") == spec.manufacturer
            assert body["device"]["model"] == (spec.model or spec.summary)
            assert body["expire_after"] == 30 if dev.driver != "lines" else "expire_after" not in body
            q = QUANTITIES.get(key)
            if q is not None and q.device_class is not None:
                assert body["device_class"] == q.device_class
                assert body.get("unit_of_measurement") == q.unit
    # Chips are made by their makers, not by the gateway.
    makers = {by_topic[f"homeassistant/sensor/gh-1_d-{drv}/{key}/config"]["device"]["manufacturer"]
              for drv, key in (("bme280", "temperature_c"), ("sht3x", "temperature_c"),
                               ("ina219", "power_w"))}
    assert makers == {"Bosch Sensortec", "Sensirion", "Texas Instruments"}
    # The gateway itself is the device every sensor names as via_device; its spool depth
    # goes stale (unavailable) when the health topic stops being refreshed.
    gw = by_topic["homeassistant/sensor/gh-1_gateway/spool_depth/config"]
    assert gw["device"]["identifiers"] == ["edge-gateway_gh-1"] and "via_device" not in gw["device"]
    assert gw["device"]["manufacturer"] == "edge-gateway"
    assert gw["expire_after"] == 3 * 30 and gw["entity_category"] == "diagnostic"
    # Inference results are sensors too.
    inf = by_topic["homeassistant/sensor/gh-1_camera/inference_ms/config"]
    assert (inf["device_class"], inf["unit_of_measurement"]) == ("duration", "ms")
    assert inf["suggested_display_precision"] == 2  # a 0.07 ms inference is not "0 ms"
    top = by_topic["homeassistant/sensor/gh-1_camera/top_label/config"]
    assert top["state_topic"] == "gateway/gh-1/camera" and "unit_of_measurement" not in top
    assert "state_class" not in top  # text, not a measurement
    # A user-defined text field is not announced as a measurement either.
    note = by_topic["homeassistant/sensor/gh-1_d-lines/note/config"]
    assert "state_class" not in note and "unit_of_measurement" not in note
    temp = by_topic["homeassistant/sensor/gh-1_d-lines/temp_c/config"]
    assert (temp["device_class"], temp["unit_of_measurement"]) == ("temperature", "°C")
    # GPS: the course averages on the circle; position and fix code keep no statistics.
    gps = {k: by_topic[f"homeassistant/sensor/gh-1_d-nmea/{k}/config"]
           for k in ("course_deg", "latitude_deg", "longitude_deg", "fix_quality", "gps_time")}
    assert gps["course_deg"]["state_class"] == "measurement_angle"
    assert all("state_class" not in gps[k] for k in gps if k != "course_deg")
    assert gps["fix_quality"]["name"] == "Fix quality"
    assert gps["gps_time"]["name"] == "UTC date and time"


def test_display_precision_follows_the_chip_resolution() -> None:
    """Issue 19: 0.02969 V showed as "0 V", 1.498 W as "1 W"."""
    cfg = parse_config("""
gateway: {id: g}
devices:
  - {name: pv, driver: ina219, address: 0x40}
  - {name: adc, driver: ads1115, address: 0x48, full_scale: 0.256, channels: [1]}
  - {name: adc2, driver: ads1115, address: 0x49, full_scale: 6.144, channels: [0]}
  - {name: soil, driver: tmp102, address: 0x4a, homeassistant: {precision: {temperature_c: 1}}}
  - name: meter
    driver: modbus_rtu
    port: /dev/ttyUSB0
    registers:
      - {name: voltage, address: 0, unit: v, scale: 0.1}
      - {name: current, address: 1, unit: a, scale: 0.001}
      - {name: power, address: 2, type: float32, unit: w}
""")
    anns = {a.topic.split("/", 2)[2]: a.payload for a in Discovery(cfg).announcements()}

    def shown(node: str, key: str, value: float) -> str:
        p = anns[f"g_{node}/{key}/config"]["suggested_display_precision"]
        return f"{value:.{p}f}"

    assert shown("pv", "shunt_voltage_v", 0.02969) == "0.02969"  # 10 µV LSB
    assert shown("pv", "bus_voltage_v", 1.18) == "1.180"  # 4 mV LSB
    assert shown("pv", "power_w", 1.498) == "1.498"
    assert shown("adc", "ain1_v", 0.0123) == "0.012300"  # 0.256 V / 2^15 = 7.8 µV
    assert shown("adc2", "ain0_v", 1.5) == "1.5000"  # 6.144 V / 2^15 = 188 µV
    assert shown("soil", "temperature_c", 21.0625) == "21.1"  # overridden in the config
    assert shown("meter", "voltage_v", 231.4) == "231.4"  # register scale 0.1
    assert shown("meter", "current_a", 1.234) == "1.234"
    assert shown("meter", "power_w", 285.25) == "285.25"  # float32: by unit


def test_the_validator_rejects_what_ha_rejects() -> None:
    """The tables above can fail: each thing HA refuses or gets wrong is caught."""
    good = {"state_topic": "gateway/gh-1/a", "unique_id": "u", "name": "Temperature",
            "device": {"identifiers": ["x"], "name": "gh-1 air"}, "origin": {"name": "e"},
            "device_class": "temperature", "unit_of_measurement": "°C",
            "state_class": "measurement", "suggested_display_precision": 1,
            "availability_topic": "gateway/gh-1/status",
            "payload_available": "online", "payload_not_available": "offline"}
    check_payload("homeassistant/sensor/n/o/config", good)
    check_payload("homeassistant/sensor/n/o/config", {**good, "name": None})
    check_payload("homeassistant/sensor/n/o/config",
                  {**good, "device_class": "wind_direction", "unit_of_measurement": "°",
                   "state_class": "measurement_angle"})
    no_precision = {k: v for k, v in good.items() if k != "suggested_display_precision"}
    for bad in ({"unit_of_measurement": "C"}, {"device_class": "temp"}, {"colour": "red"},
                {"device_class": "timestamp"},  # with the unit °C still set
                {"state_class": "average"}, {"device": {"identifiers": ["x"], "owner": "me"}},
                {"state_class": "total_increasing"},  # temperature is a measurement
                {"device_class": "energy", "unit_of_measurement": "Wh"},  # energy is a total
                {"device_class": None, "unit_of_measurement": "°C",
                 "state_class": "measurement_angle"},  # angles in degrees only
                {"device_class": "wind_direction", "unit_of_measurement": "°"},  # not measurement
                {"device_class": "carbon_dioxide", "unit_of_measurement": "ppm",
                 "name": "CO₂", "device": {"identifiers": ["x"], "name": "gh-1 co2"}},
                {"name": "Air temperature"},  # "gh-1 air Air temperature"
                {"origin": {"name": "e", "version": "1"}}):
        with pytest.raises(AssertionError):
            check_payload("homeassistant/sensor/n/o/config", {**good, **bad})
    with pytest.raises(AssertionError):
        check_payload("homeassistant/sensor/n/o/config", no_precision)
    with pytest.raises(AssertionError):
        check_payload("homeassistant/sensor/n/o+/config", good)


def test_entity_names_do_not_repeat_the_device_name() -> None:
    """Issue 19: sensor.co2_co2_concentration, "gps GPS fix quality (0 = none)"."""
    cfg = parse_config("""
gateway: {id: gh-1}
homeassistant: {discovery: true}
devices:
  - {name: co2, driver: scd4x, address: 0x62}
  - {name: gps, driver: nmea, port: /dev/ttyUSB0}
  - {name: voltage, driver: ina219, address: 0x40}
  - {name: humidity, driver: sht3x, address: 0x44}
""")
    anns = {a.topic.split("/", 2)[2]: a.payload for a in Discovery(cfg).announcements()}
    for topic, body in anns.items():
        check_payload(f"homeassistant/sensor/{topic}", body)

    def friendly(node: str, key: str) -> str:
        body = anns[f"gh-1_{node}/{key}/config"]
        return " ".join(n for n in (body["device"]["name"], body["name"]) if n)

    assert anns["gh-1_co2/co2_ppm/config"]["name"] is None  # the device's main feature
    assert friendly("co2", "co2_ppm") == "gh-1 co2"
    assert friendly("co2", "temperature_c") == "gh-1 co2 Temperature"
    assert friendly("gps", "fix_quality") == "gh-1 gps Fix quality"
    assert friendly("gps", "gps_time") == "gh-1 gps UTC date and time"
    assert friendly("voltage", "bus_voltage_v") == "gh-1 voltage Bus"
    assert friendly("voltage", "power_w") == "gh-1 voltage Power"
    assert friendly("humidity", "humidity_pct") == "gh-1 humidity"
    # Two entities that would both lose their whole name keep it: clear beats short.
    both = [Quantity("a_v", "V", "voltage", "Voltage"), Quantity("b_v", "V", "voltage", "Voltage")]
    assert entity_names("gh-1 voltage", both) == {"a_v": "Voltage", "b_v": "Voltage"}


def test_two_gateways_with_the_same_device_names_stay_apart() -> None:
    """Issue 19: two devices called "air" with identical entity names."""
    devices = """devices:
  - {name: air, driver: bme280, address: 0x76}
  - {name: mcu, driver: lines, port: /dev/ttyUSB0, format: csv, fields: [{name: temp, unit: c}]}
"""
    one = Discovery(parse_config("gateway: {id: greenhouse-1}\n" + devices)).announcements()
    two = Discovery(parse_config("gateway: {id: greenhouse-2}\n" + devices)).announcements()
    for a, b in zip(one, two, strict=True):
        assert a.topic != b.topic
        assert a.payload["unique_id"] != b.payload["unique_id"]
        assert a.payload["device"]["identifiers"] != b.payload["device"]["identifiers"]
        assert a.payload["device"]["name"] != b.payload["device"]["name"]
        assert a.payload["state_topic"] != b.payload["state_topic"]
    names = {a.payload["device"]["name"] for a in one + two}
    assert {"greenhouse-1 air", "greenhouse-2 air", "greenhouse-1 mcu", "greenhouse-2 mcu"} <= names
    # The unique_id is what HA keys its entity registry on: unchanged from earlier
    # releases, so existing installations keep their entity ids (see README).
    assert one[1].payload["unique_id"] == "greenhouse-1_air_temperature_c"
    # A configured name template.
    named = parse_config("gateway: {id: greenhouse-1}\n"
                         "homeassistant: {device_name: \"{device} ({gateway})\"}\n" + devices)
    assert Discovery(named).announcements()[1].payload["device"]["name"] == "air (greenhouse-1)"


@pytest.mark.parametrize("template, why", [
    ("{gateway}", "must contain {device}"),
    ("{device} {site}", "unknown placeholder(s) site"),
    ("{device", "not a valid template"),
])
def test_a_bad_device_name_template_is_a_config_error(template: str, why: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(f"gateway: {{id: g}}\nhomeassistant: {{device_name: \"{template}\"}}\n")
    assert why in str(exc.value)


def lines_device(fields: str) -> str:
    return ("gateway: {id: g}\ndevices:\n  - {name: mcu, driver: lines, port: /dev/ttyUSB0, "
            f"format: json, fields: [{fields}]}}\n")


@pytest.mark.parametrize("field, device_class, unit, state_class", [
    ("{name: temp, unit: c}", "temperature", "°C", "measurement"),
    ("{name: t_out, unit: f}", "temperature", "°F", "measurement"),
    ("{name: hum, unit: pct}", "humidity", "%", "measurement"),
    ("{name: rh, unit: pct}", "humidity", "%", "measurement"),
    ("{name: soil_moisture, unit: pct}", "moisture", "%", "measurement"),
    ("{name: duty, unit: pct}", None, "%", "measurement"),  # % of what? not guessed
    ("{name: baro, unit: hpa}", "atmospheric_pressure", "hPa", "measurement"),
    ("{name: tank, unit: pa}", "pressure", "Pa", "measurement"),
    ("{name: vbat, unit: v}", "voltage", "V", "measurement"),
    ("{name: load, unit: a}", "current", "A", "measurement"),
    ("{name: load, unit: w}", "power", "W", "measurement"),
    ("{name: meter, unit: kwh}", "energy", "kWh", "total_increasing"),
    ("{name: light, unit: lx}", "illuminance", "lx", "measurement"),
    ("{name: co2, unit: ppm}", "carbon_dioxide", "ppm", "measurement"),
    ("{name: tvoc, unit: ppb}", None, "ppb", "measurement"),
    ("{name: gas, unit: ppm}", None, "ppm", "measurement"),  # which gas? not guessed
    ("{name: pm25, unit: ugm3}", "pm25", "µg/m³", "measurement"),
    ("{name: wind_dir, unit: deg}", "wind_direction", "°", "measurement_angle"),
    ("{name: heading, unit: deg}", None, "°", "measurement_angle"),
    ("{name: lat, unit: deg}", None, "°", None),
    ("{name: speed, unit: rpm}", None, "rpm", "measurement"),  # unknown unit kept as given
    ("{name: count, type: int}", None, None, "measurement"),
    ("{name: temp, unit: c, device_class: none}", None, "°C", "measurement"),
    ("{name: x, unit: pct, device_class: battery}", "battery", "%", "measurement"),
])
def test_user_fields_get_a_device_class_from_their_unit(field: str, device_class: str | None,
                                                        unit: str | None,
                                                        state_class: str | None) -> None:
    """Issue 19: a field `temp` in `c` was a plain sensor; HA offered no °F conversion."""
    cfg = parse_config(lines_device(field))
    (ann,) = [a for a in Discovery(cfg).announcements() if "_mcu/" in a.topic]
    check_payload(ann.topic, ann.payload, status="gateway/g/status")
    assert ann.payload.get("device_class") == device_class
    assert ann.payload.get("unit_of_measurement") == unit
    assert ann.payload.get("state_class") == state_class


@pytest.mark.parametrize("field, why", [
    ("{name: temp, unit: c, device_class: humidity}", "device class humidity needs a unit"),
    ("{name: temp, unit: c, device_class: temprature}", "unknown device class 'temprature'"),
    ("{name: note, type: str, device_class: temperature}", "a str field cannot have"),
])
def test_a_device_class_ha_would_refuse_is_a_config_error(field: str, why: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(lines_device(field))
    assert why in str(exc.value)


def test_a_precision_for_a_key_the_device_does_not_publish_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("gateway: {id: g}\ndevices:\n  - {name: a, driver: ads1115, address: 0x48, "
                     "channels: [0], homeassistant: {precision: {ain3_v: 2}}}\n")
    assert "devices.0.homeassistant.precision.ain3_v" in str(exc.value)
    assert "does not publish 'ain3_v' (it publishes: ain0_v)" in str(exc.value)


# Several configs of every I2C chip: what discovery announces must be what the driver,
# run against the simulated chip, really reads.
I2C_CONFIGS = [
    "{driver: ads1115, address: 0x48}",
    "{driver: ads1115, address: 0x48, channels: [0, 1]}",
    "{driver: ads1115, address: 0x48, channels: [3], full_scale: 0.256}",
    "{driver: aht20, address: 0x38}",
    "{driver: bh1750, address: 0x23, mode: low}",
    "{driver: bme280, address: 0x76}",
    "{driver: bme280, address: 0x76, oversampling: {humidity: 0}}",
    "{driver: bme280, address: 0x77, oversampling: {pressure: 0, humidity: 0}}",
    "{driver: bmp280, address: 0x76}",
    "{driver: bmp280, address: 0x76, oversampling: {pressure: 0}}",
    "{driver: ina219, address: 0x40}",
    "{driver: scd4x, address: 0x62}",
    "{driver: sht3x, address: 0x44}",
    "{driver: sht4x, address: 0x44}",
    "{driver: tmp102, address: 0x48, extended: true}",
]


def test_i2c_configs_cover_every_i2c_driver() -> None:
    covered = {re.search(r"driver: (\w+)", c).group(1) for c in I2C_CONFIGS}  # type: ignore[union-attr]
    assert covered == {n for n, s in specs().items() if s.kind == "i2c"}


@pytest.mark.parametrize("device", I2C_CONFIGS)
def test_announced_keys_are_what_the_driver_reads_from_the_simulated_chip(device: str) -> None:
    """Issue 19: an ADS1115 with channels [0, 1] announced AIN2 and AIN3 too."""
    from hardware_sim.i2c import SimBus, make_chip

    cfg = parse_config(f"gateway: {{id: g}}\ndevices:\n  - {{name: d, {device[1:]}\n")
    dev = cfg.devices[0]
    assert isinstance(dev, I2CDevice)
    spec = spec_for(dev.driver)
    start = time.monotonic()
    skew = [0.0]  # chip time the test moves on (the SCD4x measures every 5 s)
    chip = make_chip(dev.driver, dev.address, dev.sim,
                     clock=lambda: time.monotonic() - start + skew[0], seed="d")
    assert spec.make_driver is not None
    driver = spec.make_driver(SimBus(1, [chip]), dev)
    read: set[str] = set()
    for _ in range(2):
        skew[0] += 6.0
        read |= set(driver.read())
    announced = {template_key(a.payload) for a in Discovery(cfg).announcements()
                 if a.topic.startswith("homeassistant/sensor/g_d/")}
    assert announced == read == set(quantities_for(dev))


@pytest.mark.parametrize("sentences", ["[GGA, RMC]", "[GGA]", "[RMC]", "[GNS]", "[GLL, VTG]",
                                       "[GNS, GLL, VTG, GSA]", "[RMC, GSA]",
                                       "[GGA, RMC, GNS, GLL, VTG, GSA]"])
def test_announced_gps_keys_are_what_the_decoder_makes_of_the_simulated_receiver(
        sentences: str) -> None:
    """A receiver set to send GGA only never gives speed, course or the date; GLL + VTG
    gives position, speed and course only."""
    from gateway.protocols.nmea import NmeaConfig, NmeaDecoder
    from hardware_sim.serial.gps import GpsSim, nmea_sentence

    cfg = parse_config("gateway: {id: g}\ndevices:\n  - {name: d, driver: nmea, "
                       f"port: /dev/ttyUSB0, sentences: {sentences}}}\n")
    dev = cfg.devices[0]
    assert isinstance(dev, NmeaConfig)
    kinds = dev.sentences
    # The receiver set as configured; not started (no thread), but it has its pty and a
    # directory for its link, which close() removes.
    decoder = NmeaDecoder(sentences=frozenset(kinds))
    read: set[str] = set()
    with contextlib.closing(GpsSim("d", sentences=kinds)) as gps:
        for t in (1_800_000_000.0, 1_800_000_001.0, 1_800_000_002.0):
            for body in gps.sentences_at(t):
                for fix in decoder.feed(nmea_sentence(body)):
                    read |= set(fix)
    announced = {template_key(a.payload) for a in Discovery(cfg).announcements()
                 if a.topic.startswith("homeassistant/sensor/g_d/")}
    assert read and announced == read == set(quantities_for(dev))


def test_expire_after_follows_interval_and_publish_policy() -> None:
    base = "gateway: {id: g}\ndevices:\n  - {name: a, driver: tmp102, address: 0x48, %s}\n"
    dev = parse_config(base % "interval: 100ms").devices[0]
    assert expire_after(dev) == 30  # 3 x 0.1 s, but at least 30 s
    dev = parse_config(base % "interval: 1m").devices[0]
    assert expire_after(dev) == 180
    dev = parse_config(base % "interval: 5s, publish: {on_change: true, max_silence: 5m}").devices[0]
    assert expire_after(dev) == 900  # silence up to 5 min is normal: 3 x 5 min
    dev = parse_config(base % "interval: 5s, publish: {on_change: true}").devices[0]
    assert expire_after(dev) is None  # unchanged values are never re-sent


def ha_config(tmp_path: Path, port: int, devices: str, gateway_id: str = "gh-1") -> Path:
    return write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: {gateway_id}, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {port}}}
buffer: {{path: {tmp_path}/spool.db}}
homeassistant: {{discovery: true, prefix: ha}}
devices:
{devices}""")


AIR = "  - {name: air, driver: bme280, address: 0x76, interval: 500ms}\n"
SOIL = "  - {name: soil, driver: tmp102, address: 0x48, interval: 500ms}\n"


def discovery_topics(port: int, count: int | None = None) -> dict[str, bytes]:
    """The retained discovery configs on the broker right now (wait for `count` of them)."""
    sub = Subscriber(port, "ha/#").start()
    try:
        sub.wait_for(lambda s: len(s.messages) >= (count or 1), timeout=10)
        if count is None:
            time.sleep(0.5)  # retained messages arrive together right after subscribing
        return {m.topic: m.payload for m in sub.messages if m.retain}
    finally:
        sub.stop()


# Every device kind, in configs that publish less than the catalog's full list.
SIM_DEVICES = """\
  - {name: adc, driver: ads1115, bus: 1, address: 0x48, channels: [0, 1], interval: 500ms}
  - {name: air, driver: bme280, bus: 1, address: 0x76, interval: 500ms, oversampling: {humidity: 0}}
  - {name: baro, driver: bmp280, bus: 2, address: 0x76, interval: 500ms}
  - {name: pv, driver: ina219, bus: 1, address: 0x40, interval: 500ms}
  - {name: box, driver: aht20, bus: 1, address: 0x38, interval: 500ms}
  - {name: light, driver: bh1750, bus: 1, address: 0x23, interval: 500ms}
  - {name: leaf, driver: sht3x, bus: 1, address: 0x44, interval: 500ms}
  - {name: root, driver: sht4x, bus: 2, address: 0x44, interval: 500ms}
  - {name: soil, driver: tmp102, bus: 1, address: 0x49, interval: 500ms}
  - {name: co2, driver: scd4x, bus: 3, address: 0x62, interval: 5s}
  - {name: gps, driver: nmea, port: /dev/ttyUSB0, sim: {rate_hz: 4}}
  - {name: gga, driver: nmea, port: /dev/ttyUSB5, sentences: [GGA], sim: {rate_hz: 4}}
  - name: mcu
    driver: lines
    port: /dev/ttyUSB1
    format: csv
    sim: {rate_hz: 4}
    fields: [{name: temp, unit: c}, {name: hum, unit: pct}, {name: state, type: str}]
  - name: kv
    driver: lines
    port: /dev/ttyUSB2
    format: kv
    sim: {rate_hz: 4}
    fields: [{name: wind_dir, unit: deg}, {name: count, type: int}]
  - {name: raw, driver: lines, port: /dev/ttyUSB3, format: json, sim: {rate_hz: 4}}
  - name: meter
    driver: modbus_rtu
    port: /dev/ttyUSB4
    interval: 500ms
    registers:
      - {name: voltage, address: 0, unit: v, scale: 0.1}
      - {name: energy, address: 1, type: uint32, unit: kwh, scale: 0.01}
"""


def test_retained_configs_announce_exactly_what_the_simulated_devices_publish(
        tmp_path: Path, broker: Mosquitto) -> None:
    """Against a real broker: every retained config reads a key its device really sends."""
    path = ha_config(tmp_path, broker.port, SIM_DEVICES)
    cfg = parse_config(path.read_text())
    names = [d.name for d in cfg.devices]
    sub = Subscriber(broker.port, "gateway/gh-1/+").start()
    gw = GatewayProcess(path, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(
            lambda s: all(s.count(f"gateway/gh-1/{n}") >= 2 for n in names), timeout=90), (
            {n: sub.count(f"gateway/gh-1/{n}") for n in names}, gw.output())
    finally:
        sub.stop()
        assert gw.stop() == 0, gw.output()
    published: dict[str, set[str]] = {n: set() for n in names}
    for m in sub.messages:
        device = m.topic.rsplit("/", 1)[1]
        if device in published:
            published[device] |= set(m.json()) - {"seq", "ts"}
    expected = 1 + sum(len(quantities_for(d)) for d in cfg.devices)  # + spool depth
    configs = {t: json.loads(p) for t, p in discovery_topics(broker.port, expected).items()}
    assert len(configs) == expected, sorted(configs)
    announced: dict[str, set[str]] = {n: set() for n in names}
    for topic, body in configs.items():
        check_payload(topic, body, prefix="ha")
        node = topic.split("/")[2].removeprefix("gh-1_")
        if node != "gateway":
            assert body["state_topic"] == f"gateway/gh-1/{node}"
            announced[node].add(template_key(body))
    for n in names:
        # Never a key the device does not send (HA would log a template warning per reading) ...
        assert announced[n] <= published[n], (n, announced[n] - published[n])
    # ... and every key it sends is an entity, except where the config does not say them.
    assert {n for n in names if announced[n] != published[n]} == {"raw"}
    assert announced["raw"] == set() and published["raw"]
    assert announced["adc"] == {"ain0_v", "ain1_v"}
    assert announced["air"] == {"temperature_c", "pressure_hpa"}
    assert announced["gga"] == {"latitude_deg", "longitude_deg", "altitude_m", "fix_quality",
                                "satellites", "hdop"}
    kv = configs["ha/sensor/gh-1_kv/wind_dir_deg/config"]
    assert (kv["device_class"], kv["state_class"]) == ("wind_direction", "measurement_angle")


def test_discovery_is_retained_and_removed_when_a_device_goes(tmp_path: Path,
                                                              broker: Mosquitto) -> None:
    cfg = ha_config(tmp_path, broker.port, AIR + SOIL)
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        sub = Subscriber(broker.port, "gateway/gh-1/air").start()
        assert sub.wait_for(lambda s: s.count("gateway/gh-1/air") >= 1, timeout=60), gw.output()
        sub.stop()
    finally:
        assert gw.stop() == 0, gw.output()
    first = discovery_topics(broker.port)
    expected = {f"ha/sensor/gh-1_air/{k}/config" for k in ("temperature_c", "humidity_pct",
                                                             "pressure_hpa")}
    expected |= {"ha/sensor/gh-1_soil/temperature_c/config",
                 "ha/sensor/gh-1_gateway/spool_depth/config"}
    assert set(first) == expected
    body = json.loads(first["ha/sensor/gh-1_air/pressure_hpa/config"])
    assert body["state_topic"] == "gateway/gh-1/air"
    assert (body["device_class"], body["unit_of_measurement"]) == ("atmospheric_pressure", "hPa")
    assert retained(broker.port, "gateway/gh-1/status") == b"offline"  # after a clean stop

    # Restart without `soil`: its entry is cleared (empty retained payload), air stays.
    live = Subscriber(broker.port, "ha/#").start()
    cfg = ha_config(tmp_path, broker.port, AIR)
    gw = GatewayProcess(cfg, tmp_path / "gw2.log").start()
    try:
        assert live.wait_for(
            lambda s: any(m.topic == "ha/sensor/gh-1_soil/temperature_c/config" and m.payload == b""
                          for m in s.messages), timeout=60), gw.output()
    finally:
        live.stop()
        assert gw.stop() == 0, gw.output()
    second = discovery_topics(broker.port)
    assert set(second) == expected - {"ha/sensor/gh-1_soil/temperature_c/config"}


def test_sighup_reload_reannounces_changed_devices(tmp_path: Path, broker: Mosquitto) -> None:

    cfg = ha_config(tmp_path, broker.port, AIR + SOIL)
    live = Subscriber(broker.port, "ha/#").start()
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert live.wait_for(lambda s: s.count("ha/sensor/gh-1_soil/temperature_c/config") >= 1,
                             timeout=60), gw.output()
        # Replace soil by probe and reload.
        ha_config(tmp_path, broker.port,
                  AIR + "  - {name: probe, driver: tmp102, address: 0x49, interval: 500ms}\n")
        gw.signal(signal.SIGHUP)
        assert live.wait_for(
            lambda s: any(m.topic == "ha/sensor/gh-1_soil/temperature_c/config" and m.payload == b""
                          for m in s.messages)
            and s.count("ha/sensor/gh-1_probe/temperature_c/config") >= 1, timeout=60), gw.output()
    finally:
        live.stop()
        assert gw.stop() == 0, gw.output()
    body = json.loads(retained(broker.port, "ha/sensor/gh-1_probe/temperature_c/config") or b"{}")
    assert body["state_topic"] == "gateway/gh-1/probe"
    assert retained(broker.port, "ha/sensor/gh-1_soil/temperature_c/config") is None


def test_two_gateways_on_one_broker_announce_distinct_devices(tmp_path: Path,
                                                              broker: Mosquitto) -> None:
    """Same device names on two gateways: HA gets two devices it can tell apart."""
    gws = []
    sub = Subscriber(broker.port, "gateway/+/air").start()
    try:
        for gid in ("gh-1", "gh-2"):
            (tmp_path / gid).mkdir()
            gws.append(GatewayProcess(ha_config(tmp_path / gid, broker.port, AIR, gid),
                                      tmp_path / gid / "gw.log").start())
        # Discovery goes out on connect, before the first reading.
        assert sub.wait_for(lambda s: s.count("gateway/gh-1/air") and s.count("gateway/gh-2/air"),
                            timeout=60), [gw.output() for gw in gws]
    finally:
        sub.stop()
        for gw in gws:
            assert gw.stop() == 0, gw.output()
    configs = {t: json.loads(p) for t, p in discovery_topics(broker.port, 8).items()}
    assert len(configs) == 8, sorted(configs)  # 3 air quantities + spool depth, twice
    by_gw: dict[str, list[dict[str, Any]]] = {"gh-1": [], "gh-2": []}
    for topic, body in configs.items():
        gid = body["availability_topic"].split("/")[1]
        check_payload(topic, body, prefix="ha", status=f"gateway/{gid}/status")
        by_gw[gid].append(body)
    for key in ("unique_id", "state_topic"):
        assert not {b[key] for b in by_gw["gh-1"]} & {b[key] for b in by_gw["gh-2"]}
    devices = {gid: {b["device"]["name"] for b in bodies} for gid, bodies in by_gw.items()}
    assert devices == {"gh-1": {"gh-1 air", "edge-gateway gh-1"},
                       "gh-2": {"gh-2 air", "edge-gateway gh-2"}}
