"""Per-device and pipeline health: what `{prefix}/health`, metrics and systemd report."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from gateway.reading import format_ts
from gateway.slots import SlotsRecord

State = Literal["starting", "ok", "failing", "stopped"]


class DeviceHealth(SlotsRecord):
    __slots__ = ("name", "driver", "state", "readings", "total_errors",
                 "consecutive_errors", "last_success", "last_error", "last_error_at",
                 "heartbeat", "counters")

    def __init__(self, name: str, driver: str, state: State = "starting", readings: int = 0,
                 total_errors: int = 0, consecutive_errors: int = 0,
                 last_success: float | None = None, last_error: str | None = None,
                 last_error_at: float | None = None, heartbeat: float | None = None,
                 counters: dict[str, int] | None = None) -> None:
        self.name = name
        self.driver = driver
        self.state: State = state
        self.readings = readings
        self.total_errors = total_errors
        self.consecutive_errors = consecutive_errors
        self.last_success = last_success  # Unix time
        self.last_error = last_error
        self.last_error_at = last_error_at
        #: Monotonic time the reader last finished a loop iteration (liveness).
        self.heartbeat: float = time.monotonic() if heartbeat is None else heartbeat
        #: Protocol-specific counters (bad_checksum ...).
        self.counters: dict[str, int] = {} if counters is None else counters

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "driver": self.driver,
            "state": self.state,
            "readings": self.readings,
            "errors": self.total_errors,
            "consecutive_errors": self.consecutive_errors,
            "last_success": _iso(self.last_success),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
        }
        if self.counters:
            out["counters"] = dict(self.counters)
        return out


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return format_ts(ts)


class SpoolFigures(NamedTuple):
    """What the outbox reports of its spool for the health topic (`Outbox.figures()`)."""

    depth: int
    bytes: int
    dropped: int
    rejected: int
    accepted: int
    delivered: int
    commits: int
    state: str = "ok"  # ok, full, readonly, io_error, missing (docs/spool.md)
    error: str | None = None  # what the spool's last failure was, while not ok
    since: str | None = None  # when the state last changed
    file_bytes: int = 0  # the spool's files on disk (database, WAL, index)
    waiting: int = 0  # read, not yet accepted: in memory, no seq yet
    refused: int = 0  # refused because nothing could be accepted for a while
    unencodable: int = 0  # refused: a value JSON cannot carry
    errors: int = 0  # failed spool transactions
    recreated: int = 0  # the file was deleted or replaced and written anew


class Health:
    """Shared health registry. Writers are the owning threads; readers take snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.devices: dict[str, DeviceHealth] = {}
        self.broker_connected = False
        self.broker_error: str | None = None
        self.reconnects = 0
        self.started_at = time.time()
        self._listeners: list[Callable[[], None]] = []
        self.extra: dict[str, Callable[[], dict[str, Any]]] = {}
        #: Exceptions that escaped a unit of work of a thread that is not a device's
        #: (the thread went on; see gateway.threadguard), by thread.
        self.thread_errors: dict[str, int] = {}

    def thread_error(self, thread: str) -> None:
        with self._lock:
            self.thread_errors[thread] = self.thread_errors.get(thread, 0) + 1

    def device(self, name: str, driver: str) -> DeviceHealth:
        with self._lock:
            h = self.devices.get(name)
            if h is None or h.driver != driver:
                h = DeviceHealth(name, driver)
                self.devices[name] = h
            return h

    def remove(self, name: str) -> None:
        with self._lock:
            self.devices.pop(name, None)

    def on_change(self, callback: Callable[[], None]) -> None:
        """`callback` runs in the thread that changed a state (keep it tiny)."""
        self._listeners.append(callback)

    def changed(self) -> None:
        for cb in self._listeners:
            cb()

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [d.state for d in self.devices.values()]
        return {s: states.count(s) for s in ("ok", "failing", "starting")}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            devices = {n: d.snapshot() for n, d in sorted(self.devices.items())}
            thread_errors = dict(self.thread_errors)
        out: dict[str, Any] = {
            "ts": _iso(time.time()),
            "uptime_s": round(time.time() - self.started_at, 1),
            "broker": {"connected": self.broker_connected, "reconnects": self.reconnects,
                       "last_error": self.broker_error},
            "devices": devices,
        }
        if thread_errors:
            out["thread_errors"] = thread_errors
        for key, fn in self.extra.items():
            out[key] = fn()
        return out

    def document(self, spool: SpoolFigures, refused_by_broker: int) -> dict[str, Any]:
        """The retained `{prefix}/health` document: the snapshot plus the spool's figures."""
        doc = self.snapshot()
        doc["spool"] = {**spool._asdict(), "refused_by_broker": refused_by_broker}
        return doc

    def payload(self, spool: SpoolFigures, refused_by_broker: int) -> str:
        """`document` as compact JSON, as the publisher sends it."""
        return json.dumps(self.document(spool, refused_by_broker), separators=(",", ":"))
