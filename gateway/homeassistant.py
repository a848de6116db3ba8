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
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway import __version__
from gateway.catalog.registry import quantities_for, spec_for
from gateway.config.model import Config, DeviceBase
from gateway.quantities import Quantity, field_quantity, quantity, with_precision
from gateway.reading import device_key

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


#: Decimals for user-defined fields whose step is not known, by unit (HA would otherwise
#: round by unit, showing 1.18 V as "1 V").
_UNIT_PRECISION = {"°C": 1, "°F": 1, "K": 1, "%": 1, "hPa": 1, "Pa": 0, "kPa": 2, "lx": 0,
                   "ppm": 0, "ppb": 0, "V": 3, "mV": 1, "A": 3, "mA": 1, "W": 2, "kW": 3,
                   "Wh": 1, "kWh": 3, "Hz": 2, "°": 1, "m": 2, "s": 2, "ms": 2}


def device_quantities(dev: DeviceBase) -> list[Quantity]:
    """What a device publishes given its config, as Home Assistant should show it."""
    spec = spec_for(dev.driver)
    out: list[Quantity] = []
    if spec.user_fields is not None:
        for f in spec.user_fields(dev):
            q = field_quantity(f.name, f.unit, numeric=f.numeric,
                               device_class=None if f.device_class in (None, "none")
                               else f.device_class,
                               derive=f.device_class != "none")
            if q.numeric:
                q = replace(q, precision=_UNIT_PRECISION.get(q.unit or "", 2), max_precision=9)
                q = with_precision(q, f.resolution)
            if device_key(q.key) != q.key:  # a field named like the envelope's `ts`
                q = replace(q, key=device_key(q.key))
            out.append(q)
    else:
        steps = spec.resolution(dev) if spec.resolution is not None else {}
        out = [with_precision(quantity(k), steps.get(k)) for k in quantities_for(dev)]
    ha = dev.homeassistant
    if ha is not None and ha.precision:
        out = [replace(q, precision=ha.precision[q.key]) if q.key in ha.precision else q
               for q in out]
    return out


def device_keys(dev: DeviceBase) -> list[str]:
    """The quantity keys a device publishes given its config."""
    return [q.key for q in device_quantities(dev)]


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
    return _expire(interval)


def _expire(interval: float) -> int:
    return max(EXPIRE_MIN, int(EXPIRE_POLLS * interval + 0.999))


_WORD = re.compile(r"[a-z][a-z0-9]*")


def name_words(text: str) -> set[str]:
    """The words of a name, for spotting repetition ("CO₂" and "co2" are one word)."""
    return set(_WORD.findall(text.lower().replace("₂", "2")))


def entity_names(device_name: str, quantities: list[Quantity]) -> dict[str, str | None]:
    """Short entity names that do not repeat the device name (HA shows "<device> <entity>").

    A word the device name already says is dropped ("co2" + "CO₂" -> None: the entity
    is the device's main feature and takes the device name). If that would leave two
    entities with the same name, they keep their full names: clear beats short.
    """
    taken = name_words(device_name)
    out: dict[str, str | None] = {}
    for q in quantities:
        words = q.name.split()
        kept = [w for w in words if not name_words(w) & taken]
        if len(kept) == len(words):
            out[q.key] = q.name
        elif kept:
            text = " ".join(kept)
            out[q.key] = text[:1].upper() + text[1:]
        else:
            out[q.key] = None
    counts = Counter(out.values())
    for q in quantities:
        if counts[out[q.key]] > 1:
            out[q.key] = q.name
    return out


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

    @staticmethod
    def origin() -> dict[str, Any]:
        """Who publishes the configs (HA logs it with discovery problems)."""
        return {"name": "edge-gateway", "sw_version": __version__}

    def gateway_device(self) -> dict[str, Any]:
        return {
            "identifiers": [f"edge-gateway_{self.gw}"],
            "name": f"edge-gateway {self.gw}",
            "model": "edge-gateway",
            "manufacturer": "edge-gateway",
            "sw_version": __version__,
        }

    def device_name(self, name: str) -> str:
        return self.cfg.homeassistant.device_name.format(gateway=self.gw, device=name)

    def sensor_device(self, name: str, model: str, manufacturer: str | None = None
                      ) -> dict[str, Any]:
        """A device behind the gateway (a sensor, or the inference camera)."""
        device: dict[str, Any] = {
            "identifiers": [f"edge-gateway_{self.gw}_{name}"],
            "name": self.device_name(name),
            "model": model,
            "via_device": f"edge-gateway_{self.gw}",
        }
        if manufacturer is not None:
            device["manufacturer"] = manufacturer
        return device

    def topic(self, node: str, key: str, component: str = "sensor") -> str:
        return f"{self.prefix}/{component}/{self.gw}_{node}/{key}/config"

    def binary_sensor(self, node: str, q: Quantity, state_topic: str, device: dict[str, Any],
                      expire: int | None, device_class: str | None, name: str | None
                      ) -> Announcement:
        """A true/false flag: a binary_sensor (HA: state ON/OFF; `opening` ON means open)."""
        key = q.key
        # `closed` is published as the contact's state; HA's opening classes mean "on = open".
        on_when = "not value_json" if key == "closed" else "value_json"
        body: dict[str, Any] = {
            "name": name,
            "unique_id": f"{self.gw}_{node}_{key}",
            "state_topic": state_topic,
            "value_template": f"{{{{ 'ON' if {on_when}.{key} else 'OFF' }}}}",
            "payload_on": "ON",
            "payload_off": "OFF",
            **self.availability(),
            "device": device,
        }
        if device_class is not None:
            body["device_class"] = device_class
        if q.icon is not None:
            body["icon"] = q.icon
        if key.endswith("_since_boot"):
            body["entity_category"] = "diagnostic"
        if expire is not None:
            body["expire_after"] = expire
        return Announcement(self.topic(node, key, "binary_sensor"), body)

    def sensor(self, node: str, q: Quantity, state_topic: str, device: dict[str, Any],
               template: str, expire: int | None, name: str | None) -> Announcement:
        body: dict[str, Any] = {
            # null: the entity is the device's main feature and shows the device name.
            "name": name,
            "unique_id": f"{self.gw}_{node}_{q.key}",
            "state_topic": state_topic,
            "value_template": template,
            **self.availability(),
            "device": device,
            "origin": self.origin(),
        }
        if q.device_class is not None:
            body["device_class"] = q.device_class
        if q.unit is not None and q.numeric:
            body["unit_of_measurement"] = q.unit
        if q.state_class is not None and q.numeric:
            body["state_class"] = q.state_class
        if q.numeric and q.precision is not None:
            body["suggested_display_precision"] = q.precision
        if q.icon is not None:
            body["icon"] = q.icon
        if expire is not None:
            body["expire_after"] = expire
        return Announcement(self.topic(node, q.key), body)

    def announcements(self) -> list[Announcement]:
        prefix = self.cfg.topic_prefix
        depth = Quantity("spool_depth", None, None, "Spool depth", icon="mdi:tray-full",
                         precision=0)
        spool = self.sensor(
            "gateway", depth, f"{prefix}/health", self.gateway_device(),
            "{{ value_json.spool.depth }}", _expire(self.cfg.gateway.health_interval),
            name=depth.name,
        )
        spool.payload["entity_category"] = "diagnostic"
        out = [spool]
        for dev in self.cfg.devices:
            spec = spec_for(dev.driver)
            ha = dev.homeassistant
            device = self.sensor_device(
                dev.name,
                (ha.model if ha is not None and ha.model else None) or spec.model or spec.summary,
                (ha.manufacturer if ha is not None and ha.manufacturer else None)
                or spec.manufacturer)
            expire = expire_after(dev)
            quantities = device_quantities(dev)
            if not quantities:
                log.info("home assistant discovery: device %r has no known keys (a `lines` "
                         "device without `fields`); list its fields to get entities", dev.name)
            names = entity_names(device["name"], quantities)
            for q in quantities:
                if q.binary:
                    cls = getattr(dev, "device_class", None) if q.key == "closed" else q.device_class
                    out.append(self.binary_sensor(dev.name, q, f"{prefix}/{dev.name}", device,
                                                  expire, cls, names[q.key]))
                    continue
                out.append(self.sensor(dev.name, q, f"{prefix}/{dev.name}", device,
                                       f"{{{{ value_json.{q.key} }}}}", expire, names[q.key]))
        inf = self.cfg.inference
        if inf.enabled:
            device = self.sensor_device(inf.name, "on-device image inference")
            expire = _expire(inf.publish_interval) if inf.publish_interval > 0 else None
            topic = f"{prefix}/{inf.name}"
            ms = quantity("inference_ms")
            top = Quantity("top_label", None, None, "Top label", None, "mdi:eye", numeric=False)
            names = entity_names(device["name"], [ms, top])
            out.append(self.sensor(inf.name, ms, topic, device, "{{ value_json.inference_ms }}",
                                   expire, names[ms.key]))
            out.append(self.sensor(
                inf.name, top, topic, device,
                "{% set r = value_json.labels if value_json.labels is defined "
                "else value_json.detections %}"
                "{{ (r | first).label if r else 'none' }}",
                expire, names[top.key],
            ))
        out += self.output_announcements()
        return out

    def output_announcements(self) -> list[Announcement]:
        """A `switch` per on/off output and a `number` per numeric one that takes commands.

        Entities of the gateway device; unavailable with the gateway (its status topic).
        HA publishes commands without retain (its default), which the gateway requires.
        """
        prefix = self.cfg.topic_prefix
        out: list[Announcement] = []
        for o in self.cfg.outputs:
            if not o.commands:
                continue
            body: dict[str, Any] = {
                "name": o.name.replace("_", " ").replace("-", " ").capitalize(),
                "unique_id": f"{self.gw}_{o.name}",
                "command_topic": f"{prefix}/{o.name}/set",
                "state_topic": f"{prefix}/{o.name}/state",
                **self.availability(),
                "device": self.gateway_device(),
                "origin": self.origin(),
                "retain": False,
                "optimistic": False,
            }
            if o.binary:
                component = "switch"
                body.update({"payload_on": "ON", "payload_off": "OFF",
                             "state_on": "ON", "state_off": "OFF"})
            else:
                component = "number"
                lo, hi = getattr(o, "min", None), getattr(o, "max", None)
                step = getattr(o, "step", None) or abs(getattr(o, "scale", 1.0) or 1.0)
                # HA's number defaults to 1..100; a missing bound falls back to that.
                body.update({"min": lo if lo is not None else 1,
                             "max": hi if hi is not None else 100,
                             "step": step, "mode": "box"})
                unit = getattr(o, "unit", None)
                if unit is not None:
                    body["unit_of_measurement"] = unit
            out.append(Announcement(f"{self.prefix}/{component}/{self.gw}/{o.name}/config", body))
        return out

    # -- publishing ---------------------------------------------------------------
    def __call__(self, publisher: Publisher) -> None:
        self.publish(publisher)

    def publish(self, publisher: Publisher) -> None:
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
        log.info("home assistant discovery: %d entities announced, %d removed", len(current),
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


class DiscoveryHost(Protocol):
    """What discovery needs of the gateway: its config, publisher and supervisor ticks."""

    @property
    def cfg(self) -> Config: ...

    @property
    def publisher(self) -> Publisher: ...

    @property
    def tick_hooks(self) -> list[Callable[[Any], None]]: ...


def install(gateway: DiscoveryHost) -> Discovery | None:
    """Register discovery on the gateway's publisher when the config asks for it.

    Announced after every (re)connect, and again after a SIGHUP reload changed the
    devices (the supervisor's tick hook notices the new config; the publisher thread
    publishes).
    """
    if not gateway.cfg.homeassistant.discovery:
        return None
    d = Discovery(gateway.cfg)
    gateway.publisher.on_connected.append(d)

    def on_tick(gw: DiscoveryHost) -> None:
        if gw.cfg is not d.cfg:
            d.cfg = gw.cfg
            if gw.publisher.connected:
                gw.publisher.call_soon(d)

    gateway.tick_hooks.append(on_tick)
    return d
