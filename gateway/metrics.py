"""Opt-in Prometheus endpoint (`metrics.listen: 127.0.0.1:9108`).

Nothing is counted twice: a custom collector reads the numbers the pipeline
already keeps (per-device `Health`, `Outbox.stats`, the publisher's broker
state) at scrape time, so the hot paths pay nothing. Only latencies need an
observation per event; those go into `Histogram` below (a lock and a bisect).

Other components export their numbers without knowing about Prometheus:
- per-device counters in `DeviceHealth.counters` (e.g. the inference
  supervisor's `restarts`) become `edge_gateway_device_events_total`, and
  `restarts` also `edge_gateway_worker_restarts_total`;
- `observe_inference(seconds)` feeds the inference latency histogram;
- numeric leaves of `Health.extra` sources become gauges.

prometheus-client is imported only when the endpoint is enabled (the
`metrics` extra).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway.config.types import parse_listen
from gateway.health import Health
from gateway.reading import parse_ts
from gateway.web.server import HttpListener

if TYPE_CHECKING:
    # Types only: the publisher and outbox import paho and SQLite, which a process that
    # only observes inference latency (the supervisor) need not load for them.
    from gateway.config.model import Config
    from gateway.mqtt.publisher import Publisher
    from gateway.outbox.outbox import Outbox

log = logging.getLogger("gateway.metrics")

#: Seconds from a reading's timestamp to the broker's PUBACK.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   300.0, 3600.0)
#: Seconds per inference.
INFERENCE_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Histogram:
    """A thread-safe cumulative histogram, exported by the collector at scrape time."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(sorted(buckets))
        self._counts = [0] * (len(self.bounds) + 1)  # last: +Inf only
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative buckets [(le, count)...] ending with +Inf, and the sum."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        out: list[tuple[str, int]] = []
        running = 0
        for bound, c in zip((*self.bounds, float("inf")), counts, strict=True):
            running += c
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out, total


#: Fed by the inference supervisor (or anything running a model).
INFERENCE_LATENCY = Histogram(INFERENCE_BUCKETS)


def observe_inference(seconds: float) -> None:
    INFERENCE_LATENCY.observe(seconds)


def reading_age(payload: bytes, now: float | None = None) -> float | None:
    """Seconds since the `ts` of a reading payload (None if it has none)."""
    # The encoder writes seq then ts first: avoid parsing the whole JSON.
    start = payload.find(b'"ts":"')
    if start < 0:
        return None
    end = payload.find(b'"', start + 6)
    ts = parse_ts(payload[start + 6:end].decode("ascii", "replace"))
    if ts is None:
        return None
    return (time.time() if now is None else now) - ts


class Observed(Protocol):
    """What the metrics read of the gateway (the daemon, or the status page's view of it)."""

    @property
    def health(self) -> Health: ...

    @property
    def outbox(self) -> Outbox: ...


class Acknowledging(Protocol):
    """A gateway whose publisher reports each acknowledged reading (`on_acked`)."""

    @property
    def publisher(self) -> Publisher: ...


class MetricsHost(Observed, Acknowledging, Protocol):
    @property
    def cfg(self) -> Config: ...


class GatewayCollector:
    """Reads the gateway's own bookkeeping when Prometheus scrapes."""

    def __init__(self, gateway: Observed, latency: Histogram) -> None:
        self.gw = gateway
        self.latency = latency

    def describe(self) -> list[Any]:
        return []  # unchecked collector: metrics are known only at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        gw = self.gw
        health = gw.health
        with health._lock:
            devices = list(health.devices.values())
        readings = CounterMetricFamily("edge_gateway_readings", "Readings taken per device.",
                                       labels=["device", "driver"])
        errors = CounterMetricFamily("edge_gateway_errors", "Failed polls per device.",
                                     labels=["device", "driver"])
        up = GaugeMetricFamily("edge_gateway_device_up",
                               "1 when the device's last poll succeeded.", labels=["device"])
        events = CounterMetricFamily("edge_gateway_device_events",
                                     "Device-specific counters (bad checksums, restarts...).",
                                     labels=["device", "event"])
        restarts = CounterMetricFamily("edge_gateway_worker_restarts",
                                       "Worker process restarts (inference).", labels=["device"])
        for d in devices:
            readings.add_metric([d.name, d.driver], d.readings)
            errors.add_metric([d.name, d.driver], d.total_errors)
            up.add_metric([d.name], 1.0 if d.state == "ok" else 0.0)
            for key, value in dict(d.counters).items():
                events.add_metric([d.name, key], value)
                if key == "restarts":
                    restarts.add_metric([d.name], value)
        yield from (readings, errors, up, events, restarts)

        stats = gw.outbox.stats
        spool = gw.outbox.spool
        yield GaugeMetricFamily("edge_gateway_spool_depth",
                                "Readings in the spool not yet acknowledged by the broker.",
                                value=spool.count())
        yield GaugeMetricFamily("edge_gateway_spool_bytes", "Bytes of readings in the spool.",
                                value=spool.size_bytes())
        for name, value, text in (
            ("accepted", stats.accepted, "Readings committed to the spool."),
            ("delivered", stats.delivered, "Readings acknowledged by the broker."),
            ("dropped", stats.dropped_oldest, "Oldest readings dropped because the spool was full."),
            ("rejected", stats.rejected, "New readings refused because the spool was full."),
            ("overflowed", stats.overflowed, "Readings refused because the spooler fell behind."),
            ("errors", stats.spool_errors, "Spool transactions that failed (disk full, ...)."),
        ):
            yield CounterMetricFamily(f"edge_gateway_spool_{name}", text, value=value)
        yield GaugeMetricFamily("edge_gateway_spool_ok",
                                "1 while the spool accepts writes (0: full, read-only, I/O "
                                "error or missing; see the health topic).",
                                value=1.0 if gw.outbox.spool_state == "ok" else 0.0)

        yield GaugeMetricFamily("edge_gateway_broker_connected", "1 while connected to the broker.",
                                value=1.0 if health.broker_connected else 0.0)
        yield CounterMetricFamily("edge_gateway_broker_reconnects", "Reconnections to the broker.",
                                  value=health.reconnects)
        yield GaugeMetricFamily("edge_gateway_uptime_seconds", "Seconds since the gateway started.",
                                value=time.time() - health.started_at)

        for name, hist, text in (
            ("edge_gateway_publish_latency_seconds", self.latency,
             "Seconds from a reading's timestamp to the broker's acknowledgement."),
            ("edge_gateway_inference_latency_seconds", INFERENCE_LATENCY,
             "Seconds per inference."),
        ):
            buckets, total = hist.snapshot()
            yield HistogramMetricFamily(name, text, buckets=buckets, sum_value=total)

        extra = GaugeMetricFamily("edge_gateway_extra", "Numbers from other components.",
                                  labels=["source", "key"])
        for source, fn in list(health.extra.items()):
            try:
                data = fn()
            except Exception:
                log.exception("metrics: health source %r failed", source)
                continue
            for key, number in _numeric_leaves(data):
                extra.add_metric([source, key], number)
        yield extra


def _numeric_leaves(data: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(data, int | float):  # bool included: True -> 1.0
        yield prefix, float(data)
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _numeric_leaves(v, f"{prefix}.{k}" if prefix else str(k))


_LATENCY: weakref.WeakKeyDictionary[Any, Histogram] = weakref.WeakKeyDictionary()
_LATENCY_LOCK = threading.Lock()


def latency_histogram(gateway: Acknowledging) -> Histogram:
    """The publish-latency histogram of `gateway`, fed by its publisher's acks (one per gateway)."""
    publisher = gateway.publisher
    with _LATENCY_LOCK:
        hist = _LATENCY.get(publisher)
        if hist is None:
            hist = _LATENCY[publisher] = Histogram(LATENCY_BUCKETS)

            def acked(payload: bytes) -> None:
                age = reading_age(payload)
                if age is not None:
                    hist.observe(max(0.0, age))

            publisher.on_acked = acked
        return hist


class MetricsServer:
    """`metrics.listen`: `/metrics` alone, on the same bounded listener as the status page.

    (An idle client used to block every scrape: the old server handled one
    connection at a time with no socket timeout.)
    """

    def __init__(self, gateway: MetricsHost) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        host, port = parse_listen(str(gateway.cfg.metrics.listen))
        self.latency = latency_histogram(gateway)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(GatewayCollector(gateway, self.latency))

        def metrics() -> tuple[int, str, bytes]:
            return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

        self.listener = HttpListener(host, port, {"/metrics": metrics}, name="metrics")

    @property
    def host(self) -> str:
        return self.listener.host

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def alive(self) -> bool:
        return self.listener.alive

    def start(self) -> None:
        self.listener.start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        self.listener.stop()

    def __repr__(self) -> str:
        return f"MetricsServer({self.host}:{self.port})"


__all__ = ["Histogram", "MetricsServer", "latency_histogram", "observe_inference", "reading_age"]
