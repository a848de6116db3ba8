"""SIGHUP: re-read the config and apply what can change without a restart.

- The new file is validated first (schema and the `check` command's deep
  checks). Any problem: every one is logged and the daemon keeps running on
  the config it has.
- Devices: only those added, removed or changed are stopped/started; the
  others keep running untouched. The outbox (queued readings, per-device
  `seq`) is never touched, so a restarted device continues its sequence.
- Sections owned by long-lived parts (mqtt, buffer, gateway.id/simulate,
  inference, metrics, homeassistant, outputs) are logged as "needs a restart" and keep
  their running values, so the next reload reports them again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.config.model import Config, DeviceBase
from gateway.config.problems import ConfigError
from gateway.config.schema import BaseModel
from gateway.config.snapshot import load_checked
from gateway.service.checks import start_checks
from gateway.service.notify import default_notifier
from gateway.service.reload_reply import send_reply
from gateway.service.supervised import Supervised
from gateway.service.watchdog import status_line

log = logging.getLogger("gateway.reload")

#: Sections applied only at start.
RESTART_SECTIONS = ("mqtt", "buffer", "inference", "homeassistant", "metrics")
#: Keys of `gateway:` applied only at start (the others are read when used).
RESTART_GATEWAY_KEYS = ("id", "simulate", "clock")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did: `applied` (a new config is in use, even partly), `ok` (False:
    the new file was rejected), a one-line summary and the problems found."""

    ok: bool
    applied: bool
    summary: str
    problems: tuple[str, ...] = ()


def reload_gateway(gw: Supervised) -> ReloadOutcome:
    """Reload `gw.cfg.source`; the outcome also goes back to `edge-gateway reload`."""
    notifier = default_notifier()
    notifier.reloading("reloading the configuration")
    outcome = ReloadOutcome(False, False, "reload failed")
    try:
        outcome = _reload(gw)
    except Exception:
        # A bug, not a bad file (those are ConfigError): SIGHUP must never end the daemon.
        log.exception("reload: failed; the daemon keeps running")
    finally:
        notifier.ready(status_line(gw))
        send_reply(outcome.ok, outcome.summary, outcome.problems)
    return outcome


def _reload(gw: Supervised) -> ReloadOutcome:
    source = gw.cfg.source
    log.info("SIGHUP: reloading %s", source)
    try:
        # With plain models (the daemon) a child process validates and checks.
        new, problems = load_checked(source, start_checks)
    except ConfigError as exc:
        return _rejected(source, [str(p) for p in exc.problems])
    if problems:
        return _rejected(source, problems)

    old = gw.cfg
    effective = _keep_restart_only_parts(old, new)
    changed = plan_devices(old.devices, effective.devices)
    if effective == old:
        log.info("reload: configuration unchanged")
        return ReloadOutcome(True, False, f"{source}: unchanged")
    apply_devices(gw, old, effective, changed)
    gw.cfg = effective
    summary = (f"applied ({len(effective.devices)} devices: {len(changed.added)} added, "
               f"{len(changed.changed)} changed, {len(changed.removed)} removed, "
               f"{len(changed.unchanged)} untouched)")
    log.info("reload: %s", summary)
    return ReloadOutcome(True, True, f"{source}: {summary}")


def _rejected(source: str, problems: list[str]) -> ReloadOutcome:
    for line in problems:
        log.error("reload: %s", line)
    summary = f"{source} is invalid; still running on the previous configuration"
    log.error("reload: %s", summary)
    return ReloadOutcome(False, False, summary, tuple(problems))


def _keep_restart_only_parts(old: Config, new: Config) -> Config:
    """`new`, with the parts that need a restart kept at their running values."""
    update: dict[str, Any] = {}
    for section in RESTART_SECTIONS:
        if getattr(new, section) != getattr(old, section):
            keys = _changed_keys(getattr(old, section), getattr(new, section))
            log.warning(
                "reload: %s changed (%s); that needs a restart (systemctl restart edge-gateway); "
                "keeping the running values until then", section, ", ".join(keys),
            )
            update[section] = getattr(old, section)
    g_update: dict[str, Any] = {}
    for key in RESTART_GATEWAY_KEYS:
        if getattr(new.gateway, key) != getattr(old.gateway, key):
            log.warning("reload: gateway.%s changed; that needs a restart", key)
            g_update[key] = getattr(old.gateway, key)
    if g_update:
        update["gateway"] = new.gateway.model_copy(update=g_update)
    if new.outputs != old.outputs:
        # The control thread holds the outputs (GPIO line requests, timers, safety states).
        log.warning("reload: outputs changed (%s); that needs a restart (systemctl restart "
                    "edge-gateway); keeping the running outputs until then",
                    ", ".join(sorted({o.name for o in set(new.outputs) ^ set(old.outputs)})))
        update["outputs"] = old.outputs
    return new.model_copy(update=update) if update else new


def _changed_keys(a: BaseModel | None, b: BaseModel | None) -> list[str]:
    # Names only: values may be secrets (paths are fine, but keep the rule simple).
    if a is None or b is None:
        return ["added" if a is None else "removed"]
    fields = type(a).model_fields
    return [k for k in fields if getattr(a, k) != getattr(b, k)] or ["?"]


class DevicePlan:
    def __init__(self) -> None:
        self.added: list[DeviceBase] = []
        self.changed: list[DeviceBase] = []  # the new configs
        self.removed: list[DeviceBase] = []
        self.unchanged: list[str] = []


def plan_devices(old: tuple[DeviceBase, ...], new: tuple[DeviceBase, ...]) -> DevicePlan:
    """Compare device configs by name (they are frozen pydantic models: `==` is by value)."""
    plan = DevicePlan()
    before = {d.name: d for d in old}
    after = {d.name: d for d in new}
    for name, dev in after.items():
        prev = before.get(name)
        if prev is None:
            plan.added.append(dev)
        elif prev != dev:
            plan.changed.append(dev)
        else:
            plan.unchanged.append(name)
    plan.removed = [d for n, d in before.items() if n not in after]
    return plan


def apply_devices(gw: Supervised, old: Config, new: Config, plan: DevicePlan) -> None:
    stopping = [d.name for d in plan.removed + plan.changed if d.name in gw.readers]
    if stopping:
        gw.stop_readers(stopping)
    for name in stopping:
        r = gw.readers.pop(name)
        if r.alive:
            log.error("reload: reader %s is still running; starting its replacement anyway", name)
    for dev in plan.removed:
        gw.health.remove(dev.name)
        _sim_remove(gw, old.device(dev.name))
        log.info("reload: device %s removed", dev.name)
    for dev in plan.changed:
        prev = old.device(dev.name)
        if prev.driver != dev.driver:
            gw.health.remove(dev.name)
        _sim_remove(gw, prev)
        _sim_add(gw, dev)
        _start(gw, dev)
        log.info("reload: device %s changed; restarted", dev.name)
    for dev in plan.added:
        _sim_add(gw, dev)
        _start(gw, dev)
        log.info("reload: device %s added", dev.name)


def _start(gw: Supervised, dev: DeviceBase) -> None:
    # Built with gw.make_reader, like at start; a device that is absent or broken
    # is retried by its reader, never fails the reload.
    reader = gw.make_reader(dev)
    gw.readers[dev.name] = reader
    reader.start()


def _sim_remove(gw: Supervised, dev: DeviceBase) -> None:
    if gw.sim is not None:
        gw.sim.remove_device(dev)


def _sim_add(gw: Supervised, dev: DeviceBase) -> None:
    if gw.sim is not None:
        gw.sim.add_device(dev)
