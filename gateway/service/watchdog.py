"""The systemd side of the supervisor loop: READY, STATUS, WATCHDOG, STOPPING.

The watchdog ping is a promise that the pipeline works, not merely that the
main thread is scheduled: `WATCHDOG=1` goes out (at half the watchdog period)
only while `Gateway.alive_problems()` is empty, i.e. every reader and the
publisher thread made progress recently. A wedged reader or a publisher stuck
inside paho therefore stops the pings and systemd restarts the daemon.

The publisher sleeps until there is work, so each tick also wakes it: a live
publisher answers within the tick by refreshing its heartbeat.
"""

from __future__ import annotations

import logging

from gateway.service.notify import Notifier, default_notifier
from gateway.service.supervised import Supervised

log = logging.getLogger("gateway.service")

#: Tick without a watchdog, to refresh the spool depth in STATUS= (state changes of
#: devices and the broker wake the loop at once).
STATUS_TICK = 30.0


def status_line(gw: Supervised) -> str:
    """One line for `systemctl status`: devices, spool depth, broker state."""
    counts = gw.health.counts()
    parts = [f"devices {counts['ok']} ok, {counts['failing']} failing"]
    if counts["starting"]:
        parts[0] += f", {counts['starting']} starting"
    try:
        depth = gw.outbox.depth()
    except Exception as exc:  # noqa: BLE001 - a status line must never stop the supervisor
        log.debug("spool depth unavailable: %s", exc)
        parts.append("spool ?")
    else:
        parts.append(f"spool {depth} queued")
    if gw.outbox.spool_state != "ok":
        parts.append(f"spool {gw.outbox.spool_state.upper()}: {gw.outbox.spool_error}")
    h = gw.health
    if h.broker_connected:
        parts.append(f"broker {gw.cfg.mqtt.host}:{gw.cfg.mqtt.port} connected")
    else:
        why = f" ({h.broker_error})" if h.broker_error else ""
        parts.append(f"broker {gw.cfg.mqtt.host}:{gw.cfg.mqtt.port} disconnected{why}")
    return "; ".join(parts)


class ServiceGlue:
    """Registered on a gateway: `tick` for `Gateway.run(tick)`, hooks for start and stop."""

    def __init__(self, gw: Supervised, notifier: Notifier | None = None) -> None:
        self.gw = gw
        self.notifier = notifier or default_notifier()
        period = self.notifier.watchdog_period
        self.watchdog = period is not None
        if period is not None:
            self.tick: float | None = period / 2  # sd_notify(3): ping at half the timeout
            # A healthy thread has answered within one tick (the publisher is woken
            # each tick); 1.5 ticks leaves room for a loaded machine.
            self.max_age: float | None = 1.5 * self.tick
        else:
            self.tick = STATUS_TICK if self.notifier.enabled else None
            self.max_age = None
        self.pings = 0
        self._ready_sent = False
        self._withheld: tuple[str, ...] = ()
        self._last_status: str | None = None

    def attach(self) -> ServiceGlue:
        self.gw.tick_hooks.append(self.on_tick)
        self.gw.stop_hooks.append(self.on_stop)
        if self.notifier.enabled:
            # A device or the broker changed state: refresh STATUS= now, not at the next tick.
            self.gw.health.on_change(self.gw.wake)
        return self

    def on_tick(self, gw: Supervised) -> None:
        try:
            self._tick(gw)
        except Exception:
            log.exception("service notification failed")

    def _tick(self, gw: Supervised) -> None:
        status = status_line(gw)
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(status)
            self._last_status = status
            log.info("ready: %s", status)
        if self.watchdog:
            problems = tuple(gw.alive_problems(max_age=self.max_age))
            if problems:
                if problems != self._withheld:
                    log.error("watchdog: not alive, withholding the ping: %s", "; ".join(problems))
                self._withheld = problems
                status = "NOT ALIVE: " + "; ".join(problems)
            else:
                if self._withheld:
                    log.info("watchdog: alive again")
                    self._withheld = ()
                self.notifier.watchdog(status)
                self.pings += 1
                self._last_status = status
            if status != self._last_status:
                self.notifier.status(status)
                self._last_status = status
            gw.publisher.wake()  # it answers by refreshing its heartbeat
        elif status != self._last_status:
            self.notifier.status(status)
            self._last_status = status

    def on_stop(self, gw: Supervised) -> None:
        try:
            self.notifier.stopping("stopping: delivering queued readings")
        except Exception:
            log.exception("service notification failed")


def attach(gw: Supervised, notifier: Notifier | None = None) -> ServiceGlue:
    """Wire systemd notifications into `gw`; returns the glue (its `tick` for `gw.run`)."""
    return ServiceGlue(gw, notifier).attach()
