"""The control thread: commands from MQTT, timers and fallback states for every output.

Flow of a command: paho delivers `{prefix}/{output}/set` to the publisher thread,
whose `on_message` only puts an `Inbound` on `publisher.inbox`. This thread (named
`control`) takes it, refuses it with a reason or executes it through the output's
driver (drivers.py says which thread touches which hardware), and hands what to
publish back to the publisher (`call_soon`): the confirmed state, retained, on
`{prefix}/{output}/state` and a JSON result on `{prefix}/{output}/result`.

It also owns the safety timers, and sleeps on the queue until the next one is due:
- `max_on`: an output on for that long is switched off (re-sending ON does not extend it);
- `on_broker_loss: off`: once the broker has been unreachable for `broker_loss_after`
  (checked every quarter of it, at most every 5 s), the output goes to its off state;
- `initial` at start and `on_stop` at stop.
A switch to the off state that fails is tried again every `SAFE_RETRY` seconds
(off is idempotent and the safe direction); a command that fails is reported, never
repeated.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.config.model import Config
from gateway.config.outputs import AnyOutput, ModbusRegisterOutput, SerialLineOutput
from gateway.control.command import Command, CommandError, Refused, check_age, check_range, parse
from gateway.control.drivers import OutputDriver, Value, WriteFailed, make_driver
from gateway.health import Health
from gateway.libc import name_native_thread
from gateway.mqtt.inbound import Inbound
from gateway.mqtt.publisher import Publisher

log = logging.getLogger("gateway.control")

#: Seconds between attempts to reach a safe (off) state that failed.
SAFE_RETRY = 5.0
_STOP = Inbound("", b"", False, 0.0)


@dataclass
class OutputState:
    cfg: AnyOutput
    driver: OutputDriver
    opened: bool = False
    value: Value | None = None
    #: time.monotonic() when it was switched on (max_on runs from there).
    on_since: float | None = None
    #: The broker-loss fallback was applied during the current outage.
    fallback_done: bool = False
    #: A safe-state switch that failed: when to try again, and why it is wanted.
    retry_at: float | None = None
    retry_reason: str = ""
    last_error: str | None = None


def off_value(cfg: AnyOutput) -> Value | None:
    """The output's off state: OFF, or a numeric output's `off_value`."""
    if cfg.binary:
        return False
    return getattr(cfg, "off_value", None)


def state_payload(value: Value) -> bytes:
    if isinstance(value, bool):
        return b"ON" if value else b"OFF"
    return json.dumps(_number(value)).encode()


def _number(v: float) -> float | int:
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else round(float(v), 9)


def _shown(value: Value | None) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    return _number(value)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _config_value(cfg: AnyOutput, v: Any) -> Value | None:
    """`initial` / `on_stop` from the config as a value (on/off or a number)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v == "on"
    return float(v)


class Control:
    """The `control` thread and its outputs (a daemon component: start() / stop())."""

    def __init__(self, cfg: Config, publisher: Publisher, health: Health, world: Any,
                 reader: Callable[[str], Any]) -> None:
        self.cfg = cfg
        self.publisher = publisher
        self.health = health
        self.prefix = cfg.topic_prefix
        self.inbox = publisher.inbox
        self.outputs: dict[str, OutputState] = {
            o.name: OutputState(o, make_driver(o, cfg, world, reader)) for o in cfg.outputs
        }
        #: Latest confirmed state payload per output (republished on every connect).
        self._states: dict[str, bytes] = {}
        self._states_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost_since: float | None = time.monotonic()  # not connected yet
        self.error: BaseException | None = None
        self.executed = 0
        self.refused = 0
        publisher.subscriptions.extend(
            f"{self.prefix}/{o.name}/set" for o in cfg.outputs if o.commands)
        publisher.on_connected.append(self._republish)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="control", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Apply the `on_stop` states, release the outputs; returns when done."""
        self._stop.set()
        self.inbox.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("control thread did not stop within %.0f s", timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _main(self) -> None:
        name_native_thread(threading.current_thread().name)
        try:
            self._run()
        except BaseException as exc:
            self.error = exc
            log.critical("control thread died: %r", exc, exc_info=True)
            raise

    def _run(self) -> None:
        for st in self.outputs.values():
            self._guarded(st, self._start_output)
        while not self._stop.is_set():
            try:
                msg = self.inbox.get(timeout=self._timeout())
            except queue.Empty:
                msg = None
            if self._stop.is_set():
                break
            if msg is not None and msg is not _STOP:
                self._guarded_msg(msg)
            for st in self.outputs.values():
                self._guarded(st, self._timers)
        for st in self.outputs.values():
            self._guarded(st, self._stop_output)

    def _guarded(self, st: OutputState, fn: Callable[[OutputState], None]) -> None:
        """One output's trouble (a bug included) never stops the others or the thread."""
        try:
            fn(st)
        except Exception:
            log.exception("output %s: unexpected error", st.cfg.name)

    def _guarded_msg(self, msg: Inbound) -> None:
        try:
            self._handle(msg)
        except Exception:
            log.exception("command on %s: unexpected error", msg.topic)

    # -- start / stop states -----------------------------------------------------------------
    def _open(self, st: OutputState, initial: Value | None) -> bool:
        if st.opened:
            return True
        try:
            st.driver.open(initial)
        except (OSError, WriteFailed, KeyError, ValueError) as exc:
            if st.last_error != str(exc):
                log.error("output %s: cannot open: %s", st.cfg.name, exc)
            st.last_error = str(exc)
            return False
        st.opened = True
        st.last_error = None
        return True

    def _start_output(self, st: OutputState) -> None:
        initial = _config_value(st.cfg, st.cfg.initial)
        if not self._open(st, initial):
            return
        if initial is not None:
            self._switch(st, initial, "initial state at start", source="initial")
            return
        self._refresh(st, logging.WARNING, "at start")

    def _stop_output(self, st: OutputState) -> None:
        on_stop = _config_value(st.cfg, st.cfg.on_stop)
        if on_stop is not None and self._open(st, on_stop):
            self._switch(st, on_stop, "gateway stopping", source="on_stop")
        try:
            st.driver.close()
        except (OSError, WriteFailed) as exc:
            log.warning("output %s: close failed: %s", st.cfg.name, exc)
        st.opened = False

    # -- commands -------------------------------------------------------------------------
    def _handle(self, msg: Inbound) -> None:
        parts = msg.topic[len(self.prefix) + 1:].split("/") if msg.topic.startswith(
            self.prefix + "/") else []
        st = self.outputs.get(parts[0]) if len(parts) == 2 and parts[1] == "set" else None
        if st is None or not st.cfg.commands:
            log.debug("ignoring a message on %s", msg.topic)
            return
        cfg = st.cfg
        try:
            cmd = parse(msg.payload, cfg.binary)
        except CommandError as exc:
            self._refuse(st, exc.id, None, str(exc))
            return
        except Refused as exc:
            self._refuse(st, None, None, str(exc))
            return
        try:
            if msg.retain:
                raise CommandError(cmd.id, "retained command refused: a retained set would run "
                                   "again on every reconnect; publish it without retain")
            check_age(cmd, cfg.max_age, time.time())
            if isinstance(cfg, ModbusRegisterOutput | SerialLineOutput) and not cfg.binary:
                check_range(cmd, cfg.min, cfg.max)
                if isinstance(cfg, ModbusRegisterOutput) and not cfg.allowed(float(cmd.value)):
                    raise CommandError(cmd.id, f"{float(cmd.value):g} does not fit a {cfg.type} "
                                       f"register (scale {cfg.scale:g}, offset {cfg.offset:g})")
        except Refused as exc:
            self._refuse(st, cmd.id, cmd.value, str(exc))
            return
        self._execute(st, cmd)

    def _refuse(self, st: OutputState, ident: str | None, value: Value | None, reason: str) -> None:
        self.refused += 1
        log.warning("output %s: command refused: %s", st.cfg.name, reason)
        self._result(st, ident, False, value, reason)

    def _execute(self, st: OutputState, cmd: Command) -> None:
        if not self._open(st, off_value(st.cfg)):
            self._result(st, cmd.id, False, cmd.value, f"output unavailable: {st.last_error}")
            return
        try:
            actual = st.driver.write(cmd.value)
        except WriteFailed as exc:
            self._failed(st, cmd.id, cmd.value, exc)
            return
        except OSError as exc:
            self._failed(st, cmd.id, cmd.value, WriteFailed(f"write failed: {exc}"))
            return
        self.executed += 1
        st.retry_at = None
        self._confirmed(st, actual)
        log.info("output %s: %s by command%s", st.cfg.name, _shown(actual),
                 f" {cmd.id}" if cmd.id else "")
        self._result(st, cmd.id, True, actual, None)

    def _failed(self, st: OutputState, ident: str | None, value: Value | None,
                exc: WriteFailed) -> None:
        reason = f"not confirmed: {exc}" if exc.actual is not None else f"failed: {exc}"
        log.error("output %s: write of %s %s (not retried)", st.cfg.name, _shown(value), reason)
        if exc.actual is not None:
            self._confirmed(st, exc.actual)
        else:
            self._refresh(st, logging.DEBUG, "after a failed write")
        self._result(st, ident, False, value, reason)

    def _refresh(self, st: OutputState, level: int, when: str) -> None:
        """Publish what the device holds now, if it can tell (a read is safe to repeat)."""
        try:
            value = st.driver.read()
        except (OSError, WriteFailed) as exc:
            log.log(level, "output %s: cannot read its state %s: %s", st.cfg.name, when, exc)
            return
        if value is not None:
            self._confirmed(st, value)

    def _switch(self, st: OutputState, value: Value, reason: str, source: str) -> bool:
        """A switch the gateway decides itself (initial, on_stop, max_on, broker loss)."""
        if not self._open(st, value):
            return False
        try:
            actual = st.driver.write(value)
        except (WriteFailed, OSError) as exc:
            log.error("output %s: %s: switching to %s failed: %s", st.cfg.name, reason,
                      _shown(value), exc)
            if isinstance(exc, WriteFailed) and exc.actual is not None:
                self._confirmed(st, exc.actual)
            self._result(st, None, False, value, f"{reason}: switching to {_shown(value)} "
                         f"failed: {exc}", source=source)
            return False
        self._confirmed(st, actual)
        log.info("output %s: %s (%s)", st.cfg.name, _shown(actual), reason)
        self._result(st, None, True, actual, reason, source=source)
        return True

    # -- timers -------------------------------------------------------------------------
    def _timeout(self) -> float | None:
        now = time.monotonic()
        due: list[float] = []
        for st in self.outputs.values():
            max_on = getattr(st.cfg, "max_on", None)
            if max_on is not None and st.on_since is not None:
                due.append(st.on_since + max_on)
            if st.retry_at is not None:
                due.append(st.retry_at)
            if st.cfg.on_broker_loss == "off" and not st.fallback_done:
                # The publisher does not call us when the connection drops: look now and
                # then (a timer, not a busy loop).
                due.append(now + min(5.0, max(0.1, st.cfg.broker_loss_after / 4)))
        return max(0.0, min(due) - now) if due else None

    def _timers(self, st: OutputState) -> None:
        now = time.monotonic()
        cfg = st.cfg
        connected = self.health.broker_connected
        if connected:
            self._lost_since = None
            st.fallback_done = False
        elif self._lost_since is None:
            self._lost_since = now
        max_on = getattr(cfg, "max_on", None)
        if max_on is not None and st.on_since is not None and now - st.on_since >= max_on and (
            st.retry_at is None or now >= st.retry_at
        ):
            if not self._switch(st, False, f"max_on ({max_on:g} s) elapsed: switched off",
                                source="max_on"):
                st.retry_at = now + SAFE_RETRY
            return
        if (cfg.on_broker_loss == "off" and not st.fallback_done and self._lost_since is not None
                and now - self._lost_since >= cfg.broker_loss_after
                and (st.retry_at is None or now >= st.retry_at)):
            safe = off_value(cfg)
            if safe is None:
                return
            lost = now - self._lost_since
            if self._switch(st, safe, f"broker unreachable for {lost:.0f} s: fallback to "
                            f"{_shown(safe)}", source="broker_loss"):
                st.fallback_done = True
                st.retry_at = None
            else:
                st.retry_at = now + SAFE_RETRY

    # -- publishing -----------------------------------------------------------------------
    def _confirmed(self, st: OutputState, value: Value) -> None:
        if value is True and st.value is not True:
            st.on_since = time.monotonic()
        elif value is not True:
            st.on_since = None
        st.value = value
        payload = state_payload(value)
        topic = f"{self.prefix}/{st.cfg.name}/state"
        with self._states_lock:
            self._states[topic] = payload
        self._publish(topic, payload, retain=True)

    def _result(self, st: OutputState, ident: str | None, ok: bool, value: Value | None,
                reason: str | None, source: str = "command") -> None:
        body: dict[str, Any] = {"id": ident, "ok": ok, "value": _shown(value), "reason": reason,
                                "source": source, "ts": _iso(time.time())}
        payload = json.dumps(body, separators=(",", ":")).encode()
        topic = f"{self.prefix}/{st.cfg.name}/result"
        self._publish(topic, payload, retain=False)

    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        """Queued for the publisher thread; sent once connected (QoS 1)."""

        def send(p: Publisher) -> None:
            p.publish_raw(topic, payload, qos=1, retain=retain)

        self.publisher.call_soon(send)

    def _republish(self, publisher: Publisher) -> None:
        """After each connect (publisher thread): the latest states, retained."""
        with self._states_lock:
            states = dict(self._states)
        for topic, payload in states.items():
            publisher.publish_raw(topic, payload, qos=1, retain=True)


def install(gateway: Any) -> Control | None:
    """The control component, when the config has outputs."""
    cfg = gateway.cfg
    if not cfg.outputs:
        return None

    def reader(name: str) -> Any:
        return gateway.readers.get(name)

    return Control(cfg, gateway.publisher, gateway.health, gateway.sim, reader)
