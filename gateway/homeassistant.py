"""Home Assistant MQTT discovery: every quantity of every device appears as a sensor.

With `homeassistant.discovery: true`, after each (re)connect the publisher
thread publishes one retained config per quantity at

    <prefix>/sensor/<gateway_id>_<device>/<quantity>/config

(HA's `<discovery_prefix>/<component>/<node_id>/<object_id>/config` layout).
Each points at the flat JSON reading topic with a `value_template`, shares
the gateway's `status` topic for availability, and expires after a few missed
polls. The gateway itself is a device too (spool depth, from the health
topic) and every sensor device names it as `via_device`.

What was announced is remembered in a small JSON file next to the spool, so
a device removed from the config has its entries removed (an empty retained
payload) even across restarts.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.config.model import Config, DeviceBase
from gateway.quantities import QUANTITIES, quantity

if TYPE_CHECKING:
    from gateway.mqtt.publisher import Publisher

log = logging.getLogger("gateway.homeassistant")

#: A device is marked unavailable after this many missed readings ...
EXPIRE_POLLS = 3
#: ... but never sooner than this (seconds), so fast pollers don't flap.
EXPIRE_MIN = 30


@dataclass(frozen=True)
class Announcement:
    topic: str
    payload: dict[str, Any]


def device_keys(dev: DeviceBase) -> list[str]:
    """The quantity keys a device publishes (from its driver, or its user-defined map)."""
    from gateway.catalog import spec_for

    keys = list(spec_for(dev.driver).quantities)
    for reg in getattr(dev, "registers", None) or ():  # modbus_rtu
        keys.append(str(reg.key))
    for f in getattr(dev, "fields", None) or ():  # lines
        keys.append(f"{f.name}_{f.unit}" if f.unit else str(f.name))
    return list(dict.fromkeys(keys))


def expire_after(dev: DeviceBase) -> int | None:
    """Seconds after which HA shows a sensor as unavailable (None: never)."""
    interval: float | None = getattr(dev, "interval", None)
    pol = dev.publish
    if pol is not None and pol.on_change:
        if pol.max_silence is None:
            return None  # unchanged values are not re-sent: silence is not death
        interval = max(interval or 0.0, pol.max_silence)
    if interval is None:
        return None
    return max(EXPIRE_MIN, int(EXPIRE_POLLS * interval + 0.999))


class Discovery:
    """Builds and publishes the discovery configs; a `Publisher.on_connected` hook."""

    def __init__(self, cfg: Config, record: Path | None = None) -> None:
        self.cfg = cfg
        self.prefix = cfg.homeassistant.prefix
        self.gw = cfg.gateway.id
        self.record = record if record is not None else default_record_path(cfg)

    # -- payloads ---------------------------------------------------------------
    def availability(self) -> dict[str, Any]:
        return {
            "availability_topic": f"{self.cfg.topic_prefix}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
        }

    def gateway_device(self) -> dict[str, Any]:
        return {
            "identifiers": [f"edge-gateway_{self.gw}"],
            "name": f"edge-gateway {self.gw}",
            "model": "edge-gateway",
            "manufacturer": "edge-gateway",
            "sw_version": __version__,
        }

    def sensor_device(self, name: str, model: str) -> dict[str, Any]:
        """A device behind the gateway (a sensor, or the inference camera)."""
        return {
            "identifiers": [f"edge-gateway_{self.gw}_{name}"],
            "name": name,
            "model": model,
            "manufacturer": "edge-gateway",
            "sw_version": __version__,
            "via_device": f"edge-gateway_{self.gw}",
        }

    def topic(self, node: str, key: str) -> str:
        return f"{self.prefix}/sensor/{self.gw}_{node}/{key}/config"

    def sensor(self, node: str, key: str, state_topic: str, device: dict[str, Any],
               template: str, expire: int | None, name: str | None = None) -> Announcement:
        q = quantity(key)
        known = key in QUANTITIES
        body: dict[str, Any] = {
            "name": name or q.description,
            "unique_id": f"{self.gw}_{node}_{key}",
            "state_topic": state_topic,
            "value_template": template,
            **self.availability(),
            "device": device,
        }
        if q.device_class is not None:
            body["device_class"] = q.device_class
        if q.unit is not None:
            body["unit_of_measurement"] = q.unit
        # Unknown keys (user-defined fields) are numbers only when they carry a unit.
        if q.state_class is not None and (known or q.unit is not None):
            body["state_class"] = q.state_class
        if q.icon is not None:
            body["icon"] = q.icon
        if expire is not None:
            body["expire_after"] = expire
        return Announcement(self.topic(node, key), body)

    def announcements(self) -> list[Announcement]:
        from gateway.catalog import spec_for

        prefix = self.cfg.topic_prefix
        out = [self.sensor(
            "gateway", "spool_depth", f"{prefix}/health", self.gateway_device(),
            "{{ value_json.spool.depth }}", None, name="Spool depth",
        )]
        out[0].payload["state_class"] = "measurement"
        out[0].payload["icon"] = "mdi:tray-full"
        out[0].payload["entity_category"] = "diagnostic"
        for dev in self.cfg.devices:
            device = self.sensor_device(dev.name, spec_for(dev.driver).summary or dev.driver)
            expire = expire_after(dev)
            for key in device_keys(dev):
                out.append(self.sensor(dev.name, key, f"{prefix}/{dev.name}", device,
                                       f"{{{{ value_json.{key} }}}}", expire))
        inf = self.cfg.inference
        if inf.enabled:
            device = self.sensor_device(inf.name, "on-device image inference")
            expire = max(EXPIRE_MIN, int(EXPIRE_POLLS * inf.publish_interval)) \
                if inf.publish_interval > 0 else None
            topic = f"{prefix}/{inf.name}"
            out.append(self.sensor(inf.name, "inference_ms", topic, device,
                                   "{{ value_json.inference_ms }}", expire))
            top = self.sensor(
                inf.name, "top_label", topic, device,
                "{% set r = value_json.labels if value_json.labels is defined "
                "else value_json.detections %}"
                "{{ (r | first).label if r else 'none' }}",
                expire, name="Top label",
            )
            top.payload.pop("state_class", None)
            top.payload.pop("unit_of_measurement", None)
            top.payload["icon"] = "mdi:eye"
            out.append(top)
        return out

    # -- publishing ---------------------------------------------------------------
    def __call__(self, publisher: Publisher) -> None:
        self.publish(publisher)

    def publish(self, publisher: Any) -> None:
        """Announce everything; clear what was announced before and is gone now."""
        current = self.announcements()
        topics = {a.topic for a in current}
        stale = sorted(set(self.load_record()) - topics)
        for topic in stale:
            publisher.publish_raw(topic, b"", qos=1, retain=True)
        for a in current:
            publisher.publish_raw(a.topic, json.dumps(a.payload, separators=(",", ":")), qos=1,
                                  retain=True)
        self.save_record(sorted(topics))
        log.info("home assistant discovery: %d sensors announced, %d removed", len(current),
                 len(stale))

    def load_record(self) -> list[str]:
        try:
            data = json.loads(self.record.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("cannot read the discovery record %s (%s); stale entries stay", self.record,
                        exc)
            return []
        topics = data.get("topics") if isinstance(data, dict) else None
        return [t for t in topics or [] if isinstance(t, str)]

    def save_record(self, topics: list[str]) -> None:
        tmp = self.record.with_name(self.record.name + ".tmp")
        try:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"topics": topics}, indent=1), encoding="utf-8")
            os.replace(tmp, self.record)
        except OSError as exc:
            log.warning("cannot write the discovery record %s: %s", self.record, exc)


def default_record_path(cfg: Config) -> Path:
    """Next to the spool: `<spool>.ha-discovery.json`."""
    spool = Path(cfg.buffer.path)
    return spool.with_name(spool.name + ".ha-discovery.json")


def install(gateway: Any) -> Discovery | None:
    """Register discovery on the gateway's publisher when the config asks for it.

    Announced after every (re)connect, and again after a SIGHUP reload changed the
    devices (the supervisor's tick hook notices the new config; the publisher thread
    publishes).
    """
    if not gateway.cfg.homeassistant.discovery:
        return None
    d = Discovery(gateway.cfg)
    gateway.publisher.on_connected.append(d)

    def on_tick(gw: Any) -> None:
        if gw.cfg is not d.cfg:
            d.cfg = gw.cfg
            if gw.publisher.connected:
                gw.publisher.call_soon(d)

    gateway.tick_hooks.append(on_tick)
    return d
