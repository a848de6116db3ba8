"""The publisher: the one thread that owns the paho-mqtt client.

There is no `loop_start()` thread: this thread runs paho's network loop
itself (`loop_read` / `loop_write` / `loop_misc` around one `select()` on the
broker socket and a wake-up pipe). So nothing else ever calls paho, callbacks
run here and only note facts, no cross-thread hand-off per PUBACK costs a GIL
switch, and an idle gateway sleeps in select() until a keepalive is due.
Other threads reach it only by `wake()` (new readings committed, health
changed) and `call_soon()`.

Here: the connect/backoff state machine, the in-flight window and the round
loop. Elsewhere: credentials and TLS (`credentials`), every use of paho beyond
its public API (`paho_compat`), the health document (`gateway.health`).

At most `max_inflight` readings are handed to paho before their PUBACKs come
back; paho keeps its in-flight QoS 1 messages across a reconnect and resends
them, and the spool keeps them across a restart.
"""

from __future__ import annotations

import logging
import queue
import random
import select
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config.model import Config
from gateway.health import Health
from gateway.mqtt import paho_compat
from gateway.mqtt.buffered_socket import BufferedSocket
from gateway.mqtt.credentials import SecretError, read_password, tls_context, warn_if_others_can_read
from gateway.mqtt.inbound import Inbound
from gateway.outbox.outbox import Outbox
from gateway.wakepipe import WakePipe

# Re-exported: code that predates the credentials module imports them from here.
__all__ = ["Publisher", "SecretError", "read_password", "warn_if_others_can_read"]

log = logging.getLogger("gateway.mqtt")


class Publisher:
    def __init__(
        self,
        cfg: Config,
        outbox: Outbox,
        health: Health,
        *,
        password: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.health = health
        self.prefix = cfg.topic_prefix
        self.status_topic = f"{self.prefix}/status"
        self.health_topic = f"{self.prefix}/health"
        self.qos = cfg.mqtt.qos
        self.max_inflight = cfg.mqtt.max_inflight
        # In-flight window in use: max_inflight, or less if the broker's CONNACK says
        # so (MQTT 5 Receive Maximum, §3.2.2.3.3; Mosquitto sends its
        # max_inflight_messages). paho does not enforce it, so we do.
        self.window = self.max_inflight
        self._control_inflight: dict[int, str] = {}  # status/discovery mid (QoS 1) -> topic
        # Work handed in by other threads (call_soon); everything else is this thread's.
        self._calls: queue.SimpleQueue[Callable[[Publisher], None]] = queue.SimpleQueue()
        # Wake-up pipe: select() waits on it next to the broker socket.
        self._wake = WakePipe()
        self._stop_deadline: float | None = None
        self._stop_attempted = False
        self._thread: threading.Thread | None = None
        self._inflight: dict[int, tuple[int, str]] = {}  # paho mid -> (outbox id, topic)
        self._acked: list[int] = []
        self._facts: list[tuple[str, Any]] = []  # what paho's callbacks reported this round
        self.connected = False  # CONNACK accepted
        self._ever_connected = False
        self._last_refusal: str | None = None
        self._lost = False  # the connection was lost (logged as such); until reconnected
        self._backoff = cfg.mqtt.reconnect_min
        self._next_attempt = 0.0
        self.error: BaseException | None = None
        self.heartbeat = time.monotonic()
        self.failed_acks = 0
        self._refused_topics: set[str] = set()
        self.health_changed = False
        #: Called in this thread after each (re)connect, e.g. Home Assistant discovery.
        self.on_connected: list[Callable[[Publisher], None]] = []
        #: Called in this thread with the payload of each reading the broker acknowledged.
        self.on_acked: Callable[[bytes], None] | None = None
        self._sent_payloads: dict[int, bytes] = {}  # paho mid -> payload (only with on_acked)
        #: Topics subscribed after each connect (QoS 0: see docs/control.md), and where
        #: their messages go. on_message only puts them there: no work in paho's callback.
        self.subscriptions: list[str] = []
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.client = self._make_client(password)
        outbox.on_ready(self.wake)
        health.on_change(self._health_changed)

    # -- setup ---------------------------------------------------------------------
    def _make_client(self, password: str | None) -> mqtt.Client:
        m = self.cfg.mqtt
        v5 = m.protocol == "5"
        client = paho_compat.make_client(
            CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.suppress_exceptions = True
        client.enable_logger(_paho_log)
        client.max_queued_messages_set(0)
        # Our window is the limit (0 = none inside paho; see `window`). With a limit, paho
        # walks all its outgoing messages on every PUBACK (`_update_inflight`): 16 % of
        # the publisher's time at 200 in flight.
        client.max_inflight_messages_set(0)
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        if m.username is not None:
            client.username_pw_set(m.username, password)
        if m.tls is not None:
            client.tls_set_context(tls_context(m.tls))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # paho's hook for an external event loop (which this thread is): with it set,
        # publish() only queues the packet, and `_wait` writes a whole round with one
        # loop_write() instead of one per publish.
        client.on_socket_register_write = _write_next_round
        return client

    # -- paho callbacks: they run in this thread, inside loop_read/loop_write ---------
    # They only note facts; the work happens after paho returns (no re-entry into paho
    # from within its own callback machinery).
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        self._facts.append(("connect", (reason_code, properties)))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._facts.append(("disconnect", reason_code))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        sent_reading = self._inflight.pop(mid, None)
        if sent_reading is None:  # status/health/discovery, or a duplicate after a reconnect
            control_topic = self._control_inflight.pop(mid, None)
            if control_topic is not None and getattr(reason_code, "is_failure", False):
                log.warning("broker refused the message on %s (%s); check its access rules",
                            control_topic, reason_code)
            return
        msg_id, topic = sent_reading
        sent = self._sent_payloads.pop(mid, None)
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            self.failed_acks += 1
            if topic not in self._refused_topics:  # once per topic, not once per reading
                self._refused_topics.add(topic)
                log.error("broker refused a reading on %s (%s); it stays in the spool and is "
                          "retried after the next restart; check the broker's access rules "
                          "(further refusals are counted in health: spool.refused_by_broker)",
                          topic, reason_code)
            return
        self._acked.append(msg_id)
        if sent is not None and self.on_acked is not None:
            self.on_acked(sent)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.inbox.put(Inbound(message.topic, bytes(message.payload), bool(message.retain),
                               time.time(), getattr(message, "properties", None)))

    def _health_changed(self) -> None:
        self.health_changed = True
        self.wake()

    # -- lifecycle (other threads) ---------------------------------------------------
    def start(self) -> None:
        m = self.cfg.mqtt
        props = None
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = int(m.session_expiry)
        # Only records where to connect; the publisher thread does the connecting.
        self.client.connect_async(
            m.host, m.port, keepalive=int(m.keepalive),
            clean_start=m.protocol != "5" or m.session_expiry == 0,
            properties=props,
        )
        self._thread = threading.Thread(target=self._main, name="mqtt-publisher", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, drain_timeout: float) -> None:
        """Deliver what is queued for up to `drain_timeout`, then go offline cleanly."""
        self._stop_deadline = time.monotonic() + drain_timeout
        self.wake()
        if self._thread is not None:
            self._thread.join(drain_timeout + 10)
            if self._thread.is_alive():
                log.error("publisher did not stop in time")
                return
        self._wake.close()

    def wake(self) -> None:
        """Make the publisher look at its work now (any thread; cheap when repeated)."""
        self._wake.wake()

    def call_soon(self, fn: Callable[[Publisher], None]) -> None:
        """Run `fn(publisher)` in the publisher thread while connected (e.g. re-announce)."""
        self._calls.put(fn)
        self.wake()

    def publish_raw(self, topic: str, payload: bytes | str, qos: int = 1,
                    retain: bool = False) -> mqtt.MQTTMessageInfo:
        """For hooks running in this thread (status, health, discovery)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            self._control_inflight[info.mid] = topic  # counts against the broker's window
        return info

    # -- the thread -------------------------------------------------------------------
    def _main(self) -> None:
        from gateway.threadguard import run_guarded

        try:
            run_guarded("mqtt publisher", self._loop, wait=self._pause_after_error,
                        on_error=lambda exc: self.health.thread_error("mqtt-publisher"),
                        max_pause=1.0)
        except BaseException as exc:
            self.error = exc
            log.critical("publisher died: %r", exc, exc_info=True)
            raise

    def _pause_after_error(self, seconds: float) -> bool:
        """Sleep before the loop starts over; True (end the thread) once stop's time is up."""
        deadline = self._stop_deadline
        if deadline is not None:
            seconds = min(seconds, deadline - time.monotonic())
        time.sleep(max(0.0, seconds))
        deadline = self._stop_deadline
        if deadline is not None and time.monotonic() >= deadline:
            self._go_offline()
            return True
        return False

    def _loop(self) -> None:
        from gateway.clock import default_clock

        clock = default_clock()  # holds readings while the wall clock is not synchronised
        health_every = self.cfg.gateway.health_interval
        keepalive = self.cfg.mqtt.keepalive
        next_health = time.monotonic() + health_every
        while True:
            now = time.monotonic()
            self.heartbeat = now
            stopping = self._stop_deadline is not None
            # A lost connection is noted (and logged as such) before the next attempt.
            self._handle_facts()
            sock = self.client.socket()
            if sock is None and (
                (not stopping and now >= self._next_attempt)
                # At stop, one more try right away: the broker may just be back, and the
                # backlog could still go out within stop_timeout.
                or (stopping and not self._stop_attempted)
            ):
                self._stop_attempted = stopping
                self._attempt_connect()
                sock = self.client.socket()
            if sock is not None:
                self.client.loop_misc()  # keepalive pings; notices a silent broker
            self._handle_facts()
            while self.connected:
                try:
                    fn = self._calls.get_nowait()
                except queue.Empty:
                    break
                try:
                    fn(self)
                except Exception:
                    log.exception("publisher call failed")
            if self.connected and (self.health_changed or now >= next_health):
                self._publish_health()
                next_health = now + health_every
            backlog = True  # unknown while we cannot take
            # Refill as soon as a slot is free. Under load one round handles many PUBACKs,
            # so takes are batches anyway; waiting for half a small window (a broker's
            # Receive Maximum of 5) stalled on the broker's Nagle + our delayed ACK, ~40 ms
            # a round, because a PUBLISH of ours is what carries the ACK it waits for.
            room = self._room()
            holding = clock.holding()
            if holding:
                backlog = False  # they wait in the spool for the clock (gateway.clock)
            elif self.connected and room > 0:
                msgs = self.outbox.take(room)
                for msg in msgs:
                    self._send(msg.id, msg.topic, clock.finish(msg.payload))
                backlog = bool(msgs)
            if self._acked:
                self.outbox.ack(self._acked)
                self._acked = []
            if stopping:
                assert self._stop_deadline is not None
                if not self._inflight and (not self.connected or not backlog):
                    break
                if not self.connected and self.client.socket() is None:
                    break  # no broker to wait for: unacknowledged readings stay spooled
                if now >= self._stop_deadline:
                    log.warning(
                        "stop: %d readings not yet acknowledged stay in the spool for next start",
                        len(self._inflight) + self.outbox.figures().depth,
                    )
                    break
            if backlog and self.connected and self._room() > 0:
                continue  # more to send right away
            # Sleep until the broker says something, someone wakes us, or a timer is due.
            deadlines = [next_health] if self.connected else []
            if sock is None and not stopping:
                deadlines.append(self._next_attempt)
            if sock is not None:
                deadlines.append(now + keepalive / 2)
            if stopping:
                deadlines.append(self._stop_deadline)  # type: ignore[arg-type]
            if holding:
                deadlines.append(now + clock.next_check())
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            self._wait(sock, timeout)
        self._go_offline()

    def _room(self) -> int:
        """Free slots in the in-flight window (readings and control messages share it)."""
        return self.window - len(self._inflight) - len(self._control_inflight)

    def _wait(self, sock: Any, timeout: float | None) -> None:
        """Block in select() on the broker socket and the wake pipe; then do the I/O."""
        if sock is not None and self.client.want_write():
            self.client.loop_write()  # this round's packets, into the BufferedSocket
        self._flush(self.client.socket())
        rlist: list[Any] = [self._wake]
        wlist: list[Any] = []
        if sock is not None:
            rlist.append(sock)
            if self.client.want_write() or _buffered_output(sock):
                wlist.append(sock)
            if _buffered_input(sock):
                timeout = 0.0  # PUBACKs already read from the socket wait to be handled
        try:
            readable, writable, _ = select.select(rlist, wlist, [], timeout)
        except (OSError, ValueError) as exc:  # the socket closed under us
            log.debug("select: %s", exc)
            readable, writable = [], []
        if self._wake in readable:
            self._wake.drain()
        if sock is not None and (sock in readable or _buffered_input(sock)):
            self.client.loop_read(max_packets=1000)
        if sock is not None and self.client.socket() is not None and (
            sock in writable or self.client.want_write()
        ):
            self.client.loop_write()
        self._flush(self.client.socket())

    def _flush(self, sock: Any) -> None:
        """Send what paho queued this round in one syscall (see BufferedSocket)."""
        if isinstance(sock, BufferedSocket) and sock.buffered_output:
            try:
                sock.flush()
            except OSError as exc:
                # The next read reports the lost connection through paho, which keeps
                # every unacknowledged QoS 1 message for the reconnect.
                log.debug("send: %s", exc)

    def _attempt_connect(self) -> None:
        try:
            self.client.reconnect()  # TCP (+ TLS) connect and CONNECT; CONNACK comes later
        except (OSError, ValueError) as exc:
            self._connect_failed(exc)
            self._schedule_retry()
            return

    def _schedule_retry(self) -> None:
        # Jittered (half to all of the backoff), so a fleet that lost the same broker
        # does not come back in lock step; doubling up to reconnect_max.
        self._next_attempt = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)
        self._backoff = min(self._backoff * 2, self.cfg.mqtt.reconnect_max)

    def _handle_facts(self) -> None:
        facts, self._facts = self._facts, []
        for kind, arg in facts:
            if kind == "connect":
                self._connected(*arg)
            elif kind == "disconnect":
                if self._disconnected(arg):
                    # A working connection went away: the first retry right away (a
                    # broker restart is often over by then), then the backoff.
                    self._backoff = self.cfg.mqtt.reconnect_min
                    self._next_attempt = time.monotonic()
                elif self._next_attempt <= time.monotonic():
                    self._schedule_retry()

    def _send(self, msg_id: int, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=self.qos)
        if self.qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            # QoS 0 is not kept by paho while disconnected: take it again later.
            self.outbox.rewind()
            return
        # QoS 0 is "acknowledged" by paho's on_publish once `_wait` has written it.
        self._inflight[info.mid] = (msg_id, topic)
        if self.on_acked is not None:
            self._sent_payloads[info.mid] = payload

    def _connected(self, reason_code: Any, properties: Any = None) -> None:
        if getattr(reason_code, "is_failure", False):
            text = f"connection refused by {self.cfg.mqtt.host}:{self.cfg.mqtt.port}: {reason_code}"
            hint = _refusal_hint(str(reason_code))
            self._refused(text + (f" ({hint})" if hint else ""), logging.ERROR)
            self._schedule_retry()
            return
        self._last_refusal = None
        self._lost = False
        self._backoff = self.cfg.mqtt.reconnect_min
        # paho resends what was in flight; a control mid it never acknowledges must not
        # shrink the window for good, so the count starts over with each connection.
        self._control_inflight.clear()
        receive_max = getattr(properties, "ReceiveMaximum", None)
        window = min(self.max_inflight, int(receive_max)) if receive_max else self.max_inflight
        if window != self.window:
            log.info("in-flight window %d (the broker's Receive Maximum is %s)", window, receive_max)
            self.window = window
        self.connected = True
        self.health.broker_connected = True
        self.health.broker_error = None
        self.health.changed()  # systemd's Status= line says so at once
        if self._ever_connected:
            self.health.reconnects += 1
            log.info("reconnected to %s:%d", self.cfg.mqtt.host, self.cfg.mqtt.port)
        else:
            log.info("connected to %s:%d", self.cfg.mqtt.host, self.cfg.mqtt.port)
        self._ever_connected = True
        self.publish_raw(self.status_topic, b"online", qos=1, retain=True)
        if self.subscriptions:
            # QoS 0: a broker keeps no QoS 0 message for an offline session (Mosquitto's
            # default), so a command sent while we were away is never replayed later.
            self.client.subscribe([(topic, 0) for topic in self.subscriptions])
        for hook in self.on_connected:
            try:
                hook(self)
            except Exception:
                log.exception("on-connect hook failed")
        self._publish_health()

    def _connect_failed(self, exc: BaseException) -> None:
        what, level = _describe_connect_error(exc)
        self._refused(f"cannot connect to {self.cfg.mqtt.host}:{self.cfg.mqtt.port}: {what}", level)

    def _refused(self, text: str, level: int) -> None:
        """A failed attempt: logged once per distinct reason; retried with backoff."""
        self.connected = False
        self.health.broker_connected = False
        changed = self.health.broker_error != text
        self.health.broker_error = text
        if changed:
            self.health.changed()
        if self._last_refusal != text:
            if self._lost and level == logging.WARNING:
                level = logging.INFO  # the loss itself was the warning
            log.log(level, "%s; readings are kept in the spool, retrying with backoff", text)
            self._last_refusal = text

    def _disconnected(self, reason_code: Any) -> bool:
        """The connection ended; True if it was a working one (now lost)."""
        was = self.connected
        self.connected = False
        self.health.broker_connected = False
        if self.qos == 0 and self._inflight:
            # paho drops QoS 0 packets it had not written yet (and keeps no others), so
            # these readings never went out: take them again after the reconnect.
            self._inflight.clear()
            self._sent_payloads.clear()
            self.outbox.rewind()
        if was:
            why = _describe_disconnect(reason_code)
            self.health.broker_error = f"lost the connection: {why}"
            self._lost = True
            self._last_refusal = None
            self.health.changed()
            log.warning(
                "lost the broker %s:%d (%s); readings are kept in the spool, reconnecting",
                self.cfg.mqtt.host, self.cfg.mqtt.port, why,
            )
        return was

    def _publish_health(self) -> None:
        self.health_changed = False
        payload = self.health.payload(self.outbox.figures(), refused_by_broker=self.failed_acks)
        self.publish_raw(self.health_topic, payload, qos=0, retain=True)

    def _go_offline(self) -> None:
        if self.connected and self.client.socket() is not None:
            info = self.publish_raw(self.status_topic, b"offline", qos=1, retain=True)
            deadline = time.monotonic() + 3.0
            while not info.is_published() and self.client.socket() is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("could not publish the offline status in time")
                    break
                self._wait(self.client.socket(), left)
            if self._acked:
                self.outbox.ack(self._acked)
                self._acked = []
        self.client.disconnect()
        # Flush the DISCONNECT packet; paho closes the socket once it is written.
        deadline = time.monotonic() + 2.0
        while self.client.socket() is not None and self.client.want_write() and (
            time.monotonic() < deadline
        ):
            self._wait(self.client.socket(), deadline - time.monotonic())
        self.connected = False
        self.health.broker_connected = False


class _LossIsOurs(logging.Filter):
    """paho logs a lost socket at ERROR ("failed to receive on socket: ..."); the
    publisher logs the loss itself, once, as a warning with the reason: keep paho's at
    DEBUG so one outage is one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.getMessage().startswith(
                "failed to receive on socket"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_paho_log = logging.getLogger("gateway.mqtt.paho")
_paho_log.addFilter(_LossIsOurs())


def _write_next_round(client: Any, userdata: Any, sock: Any) -> None:
    """paho has packets to write: `Publisher._wait` writes them once per round."""


def _buffered_input(sock: Any) -> bool:
    return isinstance(sock, BufferedSocket) and sock.pending() > 0


def _buffered_output(sock: Any) -> bool:
    return isinstance(sock, BufferedSocket) and sock.buffered_output > 0


def _describe_connect_error(exc: BaseException) -> tuple[str, int]:
    """A stable one-line reason (the same on every retry) and its log level."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate verification failed: {exc.verify_message} "
                "(check mqtt.tls.ca_file and mqtt.host)", logging.ERROR)
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}", logging.ERROR
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (broker down or wrong port?)", logging.WARNING
    if isinstance(exc, TimeoutError):
        return "timed out", logging.WARNING
    if exc.__class__ is OSError or isinstance(exc, ConnectionError):
        return f"{exc.strerror or exc}", logging.WARNING
    return f"{type(exc).__name__}: {exc}", logging.WARNING


def _describe_disconnect(reason_code: Any) -> str:
    """Why a working connection ended: the broker's DISCONNECT reason ("Server shutting
    down"), "Keep alive timeout", or paho's "Unspecified error" for a socket that died."""
    text = str(reason_code)
    if text == "Unspecified error":
        return "the connection was closed or reset"
    return text


def _refusal_hint(reason: str) -> str:
    text = reason.lower()
    if "password" in text:
        return "check mqtt.username and the password"
    if "authori" in text:
        return "check mqtt.username, the password and the broker's access rules"
    return ""
