"""Home Assistant MQTT discovery: payloads valid per HA's documented schema, retained, removed.

The allowed table below is written from Home Assistant's documentation:
- MQTT discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
  topic `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`, node_id and
  object_id limited to `[a-zA-Z0-9_-]`; a device block needs `identifiers` or
  `connections`, and entities with a device need a `unique_id`.
- MQTT sensor (https://www.home-assistant.io/integrations/sensor.mqtt/): `state_topic`
  required; the configuration variables listed in SENSOR_KEYS.
- Sensor device classes and the units each accepts
  (https://www.home-assistant.io/integrations/sensor/#device-class), and state classes
  (https://developers.home-assistant.io/docs/core/entity/sensor/#available-state-classes).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import specs
from gateway.config import parse_config
from gateway.homeassistant import Discovery, device_keys, expire_after
from gateway.quantities import QUANTITIES
from tests.support import GatewayProcess, Mosquitto, Subscriber, retained, write_config

# Device class -> units HA accepts for it (sensor integration docs, "Device class").
HA_UNITS: dict[str, set[str]] = {
    "apparent_power": {"mVA", "VA", "kVA"},
    "aqi": set(),
    "atmospheric_pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"},
    "battery": {"%"},
    "carbon_dioxide": {"ppm"},
    "carbon_monoxide": {"ppm", "mg/m³", "μg/m³"},
    "current": {"A", "mA"},
    "data_rate": {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "KiB/s",
                  "MiB/s", "GiB/s"},
    "distance": {"km", "m", "cm", "mm", "mi", "nmi", "yd", "in", "ft"},
    "duration": {"d", "h", "min", "s", "ms", "μs"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal",
               "Mcal", "Gcal"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "humidity": {"%"},
    "illuminance": {"lx"},
    "moisture": {"%"},
    "pm25": {"μg/m³"},
    "pm10": {"μg/m³"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW", "BTU/h"},
    "power_factor": {"%"},
    "pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"},
    "signal_strength": {"dB", "dBm"},
    "speed": {"ft/s", "in/d", "in/h", "in/s", "km/h", "kn", "m/s", "mph", "mm/d", "mm/s"},
    "temperature": {"°C", "°F", "K"},
    "voltage": {"V", "mV", "μV", "kV", "MV"},
    "volatile_organic_compounds_parts": {"ppm", "ppb"},
}
# Non-numeric classes: the state is an ISO 8601 text; no unit and no state_class allowed.
HA_TEXT_CLASSES = {"timestamp", "date", "enum"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
# Classes whose state_class must be total/total_increasing (sensor docs: energy is cumulative).
TOTAL_ONLY = {"energy"}
SENSOR_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category",
    "entity_picture", "expire_after", "force_update", "icon", "json_attributes_template",
    "json_attributes_topic", "last_reset_value_template", "name", "object_id",
    "default_entity_id", "options", "payload_available", "payload_not_available", "platform",
    "qos", "state_class", "state_topic", "suggested_display_precision", "unique_id",
    "unit_of_measurement", "value_template",
}
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}
ID = re.compile(r"^[a-zA-Z0-9_-]+$")


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
        lines.append(dev + "}")
    return "\n".join(lines) + "\n"


def check_payload(topic: str, body: dict[str, Any], prefix: str = "homeassistant") -> None:
    parts = topic.split("/")
    assert len(parts) == 5 and parts[0] == prefix and parts[1] == "sensor" and parts[4] == "config"
    assert ID.match(parts[2]) and ID.match(parts[3]), topic
    assert set(body) <= SENSOR_KEYS, set(body) - SENSOR_KEYS
    assert body["state_topic"] and "+" not in body["state_topic"] and "#" not in body["state_topic"]
    assert body["unique_id"] and isinstance(body["name"], str)
    dev = body["device"]
    assert set(dev) <= DEVICE_KEYS, set(dev) - DEVICE_KEYS
    assert dev["identifiers"] and all(isinstance(i, str) for i in dev["identifiers"])
    cls = body.get("device_class")
    unit = body.get("unit_of_measurement")
    if cls in HA_TEXT_CLASSES:
        assert unit is None and "state_class" not in body, f"{topic}: {cls} takes no unit/state_class"
    elif cls is not None:
        assert cls in HA_UNITS, f"{topic}: {cls} is not a sensor device class"
        if HA_UNITS[cls]:
            assert unit in HA_UNITS[cls], f"{topic}: HA does not accept {unit!r} for {cls}"
    sc = body.get("state_class")
    if sc is not None:
        assert sc in STATE_CLASSES
        if cls in TOTAL_ONLY:
            assert sc in {"total", "total_increasing"}
    if "expire_after" in body:
        assert isinstance(body["expire_after"], int) and body["expire_after"] > 0
    assert body["availability_topic"] == "gateway/gh-1/status"
    # What the publisher really sends on the status topic (and as its will).
    assert (body["payload_available"], body["payload_not_available"]) == ("online", "offline")


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
        keys = device_keys(dev)
        assert keys, dev.driver
        for key in keys:
            body = by_topic[f"homeassistant/sensor/gh-1_{dev.name}/{key}/config"]
            assert body["state_topic"] == f"gateway/gh-1/{dev.name}"
            assert body["value_template"] == f"{{{{ value_json.{key} }}}}"
            assert body["device"]["via_device"] == "edge-gateway_gh-1"
            assert body["device"]["name"] == dev.name
            assert body["expire_after"] == 30 if dev.driver != "lines" else "expire_after" not in body
            q = QUANTITIES.get(key)
            if q is not None and q.device_class is not None:
                assert body["device_class"] == q.device_class
                assert body.get("unit_of_measurement") == q.unit
    # The gateway itself is the device every sensor names as via_device.
    gw = by_topic["homeassistant/sensor/gh-1_gateway/spool_depth/config"]
    assert gw["device"]["identifiers"] == ["edge-gateway_gh-1"] and "via_device" not in gw["device"]
    # Inference results are sensors too.
    inf = by_topic["homeassistant/sensor/gh-1_camera/inference_ms/config"]
    assert (inf["device_class"], inf["unit_of_measurement"]) == ("duration", "ms")
    top = by_topic["homeassistant/sensor/gh-1_camera/top_label/config"]
    assert top["state_topic"] == "gateway/gh-1/camera" and "unit_of_measurement" not in top
    assert "state_class" not in top  # text, not a measurement
    # A user-defined text field is not announced as a measurement either.
    note = by_topic["homeassistant/sensor/gh-1_d-lines/note/config"]
    assert "state_class" not in note and "unit_of_measurement" not in note
    assert by_topic["homeassistant/sensor/gh-1_d-lines/temp_c/config"]["unit_of_measurement"] == "°C"


def test_the_validator_rejects_what_ha_rejects() -> None:
    """The table above can fail: a unit HA refuses for the class is caught."""
    good = {"state_topic": "gateway/gh-1/a", "unique_id": "u", "name": "T",
            "device": {"identifiers": ["x"]}, "device_class": "temperature",
            "unit_of_measurement": "°C", "availability_topic": "gateway/gh-1/status",
            "payload_available": "online", "payload_not_available": "offline"}
    check_payload("homeassistant/sensor/n/o/config", good)
    for bad in ({"unit_of_measurement": "C"}, {"device_class": "temp"}, {"colour": "red"},
                {"device_class": "timestamp"},  # with the unit °C still set
                {"state_class": "average"}, {"device": {"identifiers": ["x"], "owner": "me"}}):
        with pytest.raises(AssertionError):
            check_payload("homeassistant/sensor/n/o/config", {**good, **bad})
    with pytest.raises(AssertionError):
        check_payload("homeassistant/sensor/n/o+/config", good)


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


def ha_config(tmp_path: Path, port: int, devices: str) -> Path:
    return write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: gh-1, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {port}}}
buffer: {{path: {tmp_path}/spool.db}}
homeassistant: {{discovery: true, prefix: ha}}
devices:
{devices}""")


AIR = "  - {name: air, driver: bme280, address: 0x76, interval: 500ms}\n"
SOIL = "  - {name: soil, driver: tmp102, address: 0x48, interval: 500ms}\n"


def discovery_topics(port: int) -> dict[str, bytes]:
    """The retained discovery configs on the broker right now."""
    sub = Subscriber(port, "ha/#").start()
    try:
        sub.wait_for(lambda s: len(s.messages) >= 1, timeout=5)
        time.sleep(0.5)  # retained messages arrive together right after subscribing
        return {m.topic: m.payload for m in sub.messages if m.retain}
    finally:
        sub.stop()


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
    import signal

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
