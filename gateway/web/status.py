"""The status page's data: `/api/status` and `/api/series`, built from the gateway's bookkeeping.

`/api/status` (refreshed by the page every few seconds; documented in docs/status-page.md):
the gateway (id, version, uptime), the broker (connected, reconnects, last error),
the spool (depth, bytes, the oldest waiting reading's age, counters), one entry
per device (state, counters, last error, last values with units and age) and the
recent events. `/api/series` has each numeric quantity's history for the
sparklines (fetched less often: it is the larger document).

Nothing secret is served: no password, no file contents, no config text.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from gateway import __version__
from gateway.config.model import Config
from gateway.config.types import parse_listen
from gateway.health import Health
from gateway.metrics import GatewayCollector, latency_histogram, reading_age
from gateway.mqtt.credentials import read_secret_file
from gateway.mqtt.publisher import Publisher
from gateway.outbox import Outbox
from gateway.quantities import quantity
from gateway.reading import Reading, format_ts
from gateway.web.recorder import StatusRecorder
from gateway.web.server import HttpListener, Route, is_loopback, json_response

log = logging.getLogger("gateway.web")

#: How long the oldest spooled reading's age is reused (it costs one SQLite query).
OLDEST_CACHE_S = 2.0


class GatewayView(Protocol):
    """What the status page reads from the daemon."""

    cfg: Config
    health: Health
    outbox: Outbox
    put: Callable[[Reading], bool]
    components: list[Any]

    @property
    def publisher(self) -> Publisher: ...


class StatusPage:
    """The `http.listen` component: the page, its JSON API and (when enabled) `/metrics`."""

    def __init__(self, gw: GatewayView) -> None:
        cfg = gw.cfg.http
        assert cfg.listen is not None
        self.gw = gw
        self.recorder = StatusRecorder(gw.health, window=cfg.history, points=cfg.history_points)
        # Every reading on its way to the outbox passes the recorder (see StatusRecorder.tap).
        gw.put = self.recorder.tap(gw.put)
        self._oldest: tuple[float, float | None] = (-1e9, None)
        self._oldest_lock = threading.Lock()
        host, port = parse_listen(cfg.listen)
        routes: dict[str, Route] = {
            "/": self._index,
            "/api/status": lambda: json_response(self.status()),
            "/api/series": lambda: json_response(self.recorder.series()),
        }
        metrics = _metrics_route(gw)
        if metrics is not None:
            routes["/metrics"] = metrics
        credentials = None
        if cfg.password_file is not None:
            credentials = (cfg.username, read_secret_file(cfg.password_file, "http.password_file"))
        elif not is_loopback(host):
            log.warning(
                "STATUS PAGE OPEN TO THE NETWORK WITHOUT A PASSWORD: http://%s:%d/ is readable by "
                "anyone who can reach this host; set http.password_file (basic auth) or listen on "
                "127.0.0.1", host, port)
        self.listener = HttpListener(host, port, routes, max_connections=cfg.max_connections,
                                     timeout=cfg.timeout, credentials=credentials, name="http")

    def _index(self) -> tuple[int, str, bytes]:
        return self.listener.respond("/status.html")

    @property
    def alive(self) -> bool:
        return self.listener.alive

    def start(self) -> None:
        self.listener.start()
        log.info("status page on http://%s:%d/", self.listener.host, self.listener.port)

    def stop(self) -> None:
        self.listener.stop()

    def __repr__(self) -> str:
        return f"StatusPage({self.listener.host}:{self.listener.port})"

    # -- /api/status --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        gw = self.gw
        now = time.time()
        h = gw.health
        with h._lock:
            devices = [(d.name, d.driver, d.snapshot()) for d in h.devices.values()]
        self.recorder._health_changed()  # broker transitions between state changes
        out_devices = []
        for name, driver, snap in sorted(devices):
            last = self.recorder.last(name)
            values: list[dict[str, Any]] = []
            if last is not None:
                for key, value in last.values.items():
                    q = quantity(key)
                    values.append({"key": key, "value": value, "unit": q.unit, "label": q.name})
            out_devices.append({
                "name": name, "driver": driver, **snap,
                "last_reading": None if last is None else format_ts(last.ts),
                "age_s": None if last is None else round(max(0.0, now - last.ts), 3),
                "values": values,
            })
        stats = gw.outbox.stats
        spool = gw.outbox.spool
        cfg = gw.cfg
        return {
            "ts": format_ts(now),
            "gateway": {"id": cfg.gateway.id, "version": __version__,
                        "uptime_s": round(now - h.started_at, 1), "simulate": cfg.gateway.simulate,
                        "topic_prefix": cfg.topic_prefix},
            "broker": {"host": cfg.mqtt.host, "port": cfg.mqtt.port,
                       "connected": h.broker_connected, "reconnects": h.reconnects,
                       "last_error": h.broker_error},
            "spool": {"depth": spool.count(), "bytes": spool.size_bytes(),
                      "oldest_age_s": self._oldest_age(now), "accepted": stats.accepted,
                      "delivered": stats.delivered, "dropped": stats.dropped_oldest,
                      "rejected": stats.rejected},
            "devices": out_devices,
            "events": [{**e, "ts": format_ts(e["ts"])} for e in reversed(self.recorder.events())],
        }

    def _oldest_age(self, now: float) -> float | None:
        """Age of the oldest reading waiting in the spool (None when it is empty)."""
        with self._oldest_lock:
            at, age = self._oldest
            if time.monotonic() - at < OLDEST_CACHE_S:
                return age
            age = None
            try:
                if self.gw.outbox.spool.count() > 0:
                    msgs = self.gw.outbox.spool.fetch(0, 1)
                    if msgs:
                        age = _payload_age(msgs[0].payload, now)
            except (sqlite3.Error, OSError, ValueError) as exc:  # shows in the spool's own state
                log.debug("status: oldest spooled reading unknown: %s", exc)
            self._oldest = (time.monotonic(), age)
            return age


def _payload_age(payload: bytes, now: float) -> float | None:
    age = reading_age(payload, now)
    return None if age is None else round(max(0.0, age), 3)


def _metrics_route(gw: GatewayView) -> Route | None:
    """`/metrics` when prometheus-client (the `metrics` extra) is installed."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    except ImportError:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gw, latency_histogram(gw)))

    def metrics() -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

    return metrics


