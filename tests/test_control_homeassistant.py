"""Home Assistant sees the outputs: a `switch` per on/off output, a `number` per numeric one,
and what it would send on their command topics switches them (through a real broker)."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import parse_config
from tests.support import Mosquitto, Subscriber, retained, running_gateway, wait_until
from tests.test_control import METER, sim

# HA's MQTT switch and number keys (home-assistant.io/integrations/switch.mqtt, number.mqtt).
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic",
          "command_template", "command_topic", "device", "enabled_by_default", "encoding",
          "entity_category", "entity_picture", "icon", "json_attributes_template",
          "json_attributes_topic", "name", "object_id", "default_entity_id", "optimistic",
          "origin", "payload_available", "payload_not_available", "platform", "qos", "retain",
          "state_topic", "unique_id", "value_template"}
SWITCH_KEYS = COMMON | {"device_class", "payload_off", "payload_on", "state_off", "state_on"}
NUMBER_KEYS = COMMON | {"device_class", "max", "min", "mode", "payload_reset", "step",
                        "unit_of_measurement"}

OUTPUTS = """\
outputs:
  - {name: fan, kind: gpio, line: 5, commands: true}
  - {name: quiet, kind: gpio, line: 6}
  - {name: setpoint, kind: modbus_register, device: meter, address: 10, type: int16,
     scale: 0.5, unit: "°C", min: 5, max: 30, commands: true}
"""


def cfg_text(tmp_path: Path, port: int) -> str:
    return (f"gateway: {{id: gh-1, simulate: true}}\nmqtt: {{host: 127.0.0.1, port: {port}}}\n"
            f"buffer: {{path: {tmp_path}/spool.db}}\nhomeassistant: {{discovery: true}}\n"
            "devices:\n" + METER.format(interval="1s", sim="") + OUTPUTS)


def test_outputs_are_announced_as_a_switch_and_a_number_that_work(tmp_path: Path,
                                                                   broker: Mosquitto) -> None:
    cfg = parse_config(cfg_text(tmp_path, broker.port))
    sub = Subscriber(broker.port, "homeassistant/#").start()
    try:
        with running_gateway(cfg) as gw:
            switch_t = "homeassistant/switch/gh-1/fan/config"
            number_t = "homeassistant/number/gh-1/setpoint/config"
            assert sub.wait_for(lambda s: s.on(switch_t) and s.on(number_t))
            switch, number = sub.on(switch_t)[-1], sub.on(number_t)[-1]
            assert retained(broker.port, switch_t) == switch.payload
            assert retained(broker.port, number_t) == number.payload
            sw, nb = switch.json(), number.json()
            assert set(sw) <= SWITCH_KEYS, set(sw) - SWITCH_KEYS
            assert set(nb) <= NUMBER_KEYS, set(nb) - NUMBER_KEYS
            assert not [m.topic for m in sub.messages if "/quiet/" in m.topic]  # no commands
            for body in (sw, nb):
                assert body["availability_topic"] == "gateway/gh-1/status"
                assert (body["payload_available"], body["payload_not_available"]) == (
                    "online", "offline")
                assert body["device"]["identifiers"] == ["edge-gateway_gh-1"]
                assert body["retain"] is False and body["optimistic"] is False
            assert (nb["min"], nb["max"], nb["step"], nb["unit_of_measurement"]) == (
                5, 30, 0.5, "°C")
            # What HA sends when the switch is flipped and the number set.
            states = Subscriber(broker.port, "gateway/gh-1/+/state").start()
            ha = mqtt.Client(CallbackAPIVersion.VERSION2)
            ha.connect("127.0.0.1", broker.port)
            ha.loop_start()
            ha.publish(sw["command_topic"], sw["payload_on"], qos=1).wait_for_publish(10)
            ha.publish(nb["command_topic"], "17.5", qos=1).wait_for_publish(10)
            assert wait_until(lambda: sim(gw).outputs["fan"].on)
            assert states.wait_for(lambda s: any(
                m.payload.decode() == sw["state_on"] for m in s.on(sw["state_topic"])))
            assert states.wait_for(lambda s: any(
                json.loads(m.payload) == 17.5 for m in s.on(nb["state_topic"])))
            assert sim(gw).extras["meter"].units[3]["holding"][10] == 35
            ha.disconnect()
            ha.loop_stop()
            states.stop()
    finally:
        sub.stop()
