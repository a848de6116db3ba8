"""The daemon: builds the pipeline from a config, runs it, stops it in order.

Start:  spool/outbox -> publisher -> readers (-> inference worker)
Stop:   readers -> commit what they produced -> deliver for `stop_timeout`
        -> offline status, disconnect -> close the spool.

The main thread is the supervisor: it sleeps on an event (signals, watchdog
ticks) and never polls.
"""

from __future__ import annotations

import logging
import select
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from gateway.config.model import Config, DeviceBase
from gateway.health import Health
from gateway.libc import trim_heap
from gateway.mqtt.credentials import read_password
from gateway.mqtt.publisher import Publisher
from gateway.outbox import Outbox, open_spool
from gateway.publish_policy import ChangeFilter
from gateway.readers.base import PublishFilter, ReaderContext
from gateway.readers.factory import make_reader
from gateway.readers.i2c import I2CBuses
from gateway.readers.runner import DeviceRunner
from gateway.reading import Reading
from gateway.service.supervised import Supervised
from gateway.wakepipe import WakePipe

if TYPE_CHECKING:
    from gateway.control.control import Control
    from hardware_sim.world import SimWorld

log = logging.getLogger("gateway")

#: Where signals cannot wake the main thread through its wake-up pipe (run() called from
#: another thread), it still wakes this often (seconds), so a signal the kernel handed to
#: another thread is acted on (see Gateway.run).
SIGNAL_POLL = 1.0
#: Seconds after the start (or a reload) the supervisor gives freed memory back.
SETTLE = 5.0


class Component(Protocol):
    """An optional part with a lifetime of its own (inference supervisor, metrics server,
    status page)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def alive(self) -> bool:
        """Its thread runs (the watchdog withholds its ping when one is gone)."""


class Gateway:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.health = Health()
        from gateway.clock import ClockWatch, set_default_clock

        # Readings' timestamps until NTP has synchronised the clock (a Pi has no RTC).
        self.clock = ClockWatch(cfg.gateway.clock.sync, cfg.gateway.clock.hold)
        set_default_clock(self.clock)
        b = cfg.buffer
        spool = open_spool(
            b.durability, str(b.path), max_messages=b.max_messages, max_bytes=b.max_bytes,
            when_full=b.when_full, sync=b.sync, write_delay=b.write_delay,
            journal=b.journal,
        )
        self.outbox = Outbox(spool, cfg.topic_prefix, commit_interval=b.commit_interval,
                             commit_max_rows=b.commit_max_rows)
        self.outbox.on_thread_error = self.health.thread_error
        self.outbox.on_state_change(self.health.changed)
        self.publisher = Publisher(cfg, self.outbox, self.health, password=read_password(cfg))
        #: Where readers hand their readings (the outbox; the status page taps it).
        self.put: Callable[[Reading], bool] = self.outbox.put
        self.sim: SimWorld | None = None
        if cfg.gateway.simulate:
            # The simulator is plugged in here, at the top: nothing below imports it, and
            # a process that does not simulate never loads it.
            from hardware_sim.world import SimWorld

            self.sim = SimWorld.from_config(cfg)
            self.buses = I2CBuses(self.sim.open_bus)
        else:
            self.buses = I2CBuses()
        self.readers: dict[str, DeviceRunner] = {}
        # The main thread sleeps in select() on this; request_*() and wake() write to it,
        # and so does every signal, whichever thread the kernel hands it to (run()).
        self._wake = WakePipe()
        self._signals_wake = False  # signal.set_wakeup_fd points at _wake (run())
        self._stop_requested = False
        self._reload_requested = False
        self._trim_at: float | None = None
        self.exit_code = 0
        #: Called by the supervisor loop on each tick (watchdog, status); set by service glue.
        self.tick_hooks: list[Callable[[Supervised], None]] = []
        #: Called once when the stop begins (STOPPING=1 to systemd).
        self.stop_hooks: list[Callable[[Supervised], None]] = []
        #: Extra components with start()/stop() (inference, metrics), stopped in reverse.
        self.components: list[Component] = []
        self._install_ecosystem()
        #: Outputs switched from MQTT (None without `outputs:`).
        self.control: Control | None = None
        if cfg.outputs:
            # Imported only when configured (like discovery, metrics, the status page and
            # inference): a sensors-only daemon never loads what it does not run.
            from gateway.control.control import install as install_control

            self.control = install_control(self)
        if cfg.inference.enabled:
            # Imported only when enabled: it loads multiprocessing (and the worker numpy).
            from gateway.inference.supervisor import InferenceSupervisor

            self.components.append(InferenceSupervisor(cfg.inference, ReaderContext(
                put=self.put, health=self.health.device(cfg.inference.name, "inference"),
                on_health_change=self.health.changed, simulate=cfg.gateway.simulate)))

    def _install_ecosystem(self) -> None:
        """Home Assistant discovery (a publisher hook) and metrics (a component), if configured."""
        if self.cfg.homeassistant.discovery:
            from gateway.homeassistant import install as install_discovery

            install_discovery(self)
        if self.cfg.metrics.listen is not None:
            # Imported only when configured: it loads prometheus_client.
            from gateway.metrics import MetricsServer

            self.components.append(MetricsServer(self))
        if self.cfg.http.listen is not None:
            # Imported only when configured, like the metrics above.
            from gateway.web.status import StatusPage

            self.components.append(StatusPage(self))

    # -- building readers ------------------------------------------------------------
    def make_reader(self, dev: DeviceBase) -> DeviceRunner:
        ctx = ReaderContext(
            put=self.put,
            health=self.health.device(dev.name, dev.driver),
            on_health_change=self.health.changed,
            simulate=self.cfg.gateway.simulate,
            sim=self.sim, state_dir=Path(self.cfg.buffer.path).parent,
            publish_filter=self._publish_filter(dev),
        )
        return make_reader(dev, ctx, self.buses)

    def _publish_filter(self, dev: DeviceBase) -> PublishFilter | None:
        if dev.publish is None or not dev.publish.on_change:
            return None
        return ChangeFilter(dev.publish)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self.outbox.start()
        self.publisher.start()
        for dev in self.cfg.devices:
            reader = self.make_reader(dev)
            self.readers[dev.name] = reader
            reader.start()
        if self.control is not None:
            # After the readers: a serial_line output writes through its device's reader.
            self.control.start()
        for comp in self.components:
            comp.start()
        log.info(
            "edge-gateway %s started: %d devices, publishing to %s:%d under %s/",
            self.cfg.gateway.id, len(self.readers), self.cfg.mqtt.host, self.cfg.mqtt.port,
            self.cfg.topic_prefix,
        )

    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake.wake()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.wake()

    def wake(self) -> None:
        """Run the tick hooks now (any thread): a state changed that systemd should see."""
        self._wake.wake()

    def run(self, tick: float | None = None) -> int:
        """Start, then supervise until SIGTERM/SIGINT. Returns the exit code."""
        self._install_signals()
        previous_fd = self._route_signals()
        self.start()
        self._trim_at = time.monotonic() + SETTLE
        try:
            while not self._stop_requested:
                # Hooks run right after start (READY=1) and after every wake/tick.
                for hook in self.tick_hooks:
                    hook(self)
                while not self._sleep(self._sleep_time(tick)):
                    self._trim_when_settled()
                    if tick is not None or self._stop_requested:
                        break
                if self._reload_requested:
                    self._reload_requested = False
                    self.reload()
                    self._trim_at = time.monotonic() + SETTLE
        finally:
            try:
                self.shutdown()
            finally:
                if self._signals_wake:
                    # Before the pipe closes: a later signal must not write to a closed
                    # (and perhaps reused) descriptor.
                    signal.set_wakeup_fd(previous_fd)
                    self._signals_wake = False
                    self._wake.close()
        return self.exit_code

    def _route_signals(self) -> int:
        """Point the interpreter's signal wake-up fd at the main thread's pipe.

        Python runs signal handlers in the main thread only, and the kernel may hand
        SIGTERM to any thread (one whose signals are not pending): a main thread asleep
        with no timeout never saw it (a soak's SIGTERM was once ignored for a minute).
        The C-level handler writes every signal to this fd whichever thread it runs
        in, so select() returns and the main thread runs the handler: no need to wake
        once a second to look (bench_idle.py: one wake-up a second less). Only from the
        main thread; elsewhere the loop polls every SIGNAL_POLL. Returns the fd it
        replaced."""
        if threading.current_thread() is not threading.main_thread():
            return -1
        previous = signal.set_wakeup_fd(self._wake.write_fd(), warn_on_full_buffer=False)
        self._signals_wake = True
        return previous

    def _sleep_time(self, tick: float | None) -> float | None:
        """How long the main thread may sleep: until the next tick, the heap trim after
        the start, or (signals not routed to the pipe) the next look for them."""
        waits = [] if tick is None else [tick]
        if self._trim_at is not None:
            waits.append(max(0.0, self._trim_at - time.monotonic()))
        if not self._signals_wake:
            waits.append(SIGNAL_POLL)
        return min(waits) if waits else None

    def _sleep(self, timeout: float | None) -> bool:
        """Sleep until woken (True: a request or a signal; see the flags) or `timeout`."""
        # A signal delivered to this thread interrupts select(): the handler runs (it sets
        # a flag and writes to the pipe) and select() goes on, finding the pipe readable.
        readable, _, _ = select.select([self._wake], [], [], timeout)
        if readable:
            self._wake.drain()
            return True
        return False

    def _trim_when_settled(self) -> None:
        """Once the start (or a reload) has settled, give the C heap's free memory back:
        the imports, the config's hand-over, the first connect and commits leave 1.7 MiB
        of garbage behind (RSS is what a small Pi's user sees, docs/small-pi.md)."""
        if self._trim_at is not None and time.monotonic() >= self._trim_at:
            self._trim_at = None
            trim_heap()

    def reload(self) -> None:
        """SIGHUP: re-read the config (see gateway.service.reload)."""
        from gateway.service.reload import reload_gateway

        reload_gateway(self)

    def stop_readers(self, names: list[str] | None = None, timeout: float = 5.0) -> None:
        chosen = [self.readers[n] for n in (names if names is not None else list(self.readers))]
        for r in chosen:
            r.stop()
        deadline = time.monotonic() + timeout
        for r in chosen:
            if not r.join(max(0.0, deadline - time.monotonic())):
                log.error("reader %s did not stop within %.1f s", r.name, timeout)

    def shutdown(self) -> None:
        """Stop within `gateway.stop_timeout`, whatever the disk or the broker does: each
        step gets what is left of it (a second is kept for the last commit of acks)."""
        log.info("stopping")
        deadline = time.monotonic() + self.cfg.gateway.stop_timeout

        def left(reserve: float = 0.0) -> float:
            return max(0.0, deadline - reserve - time.monotonic())

        for hook in self.stop_hooks:
            hook(self)
        if self.control is not None:
            self.control.stop()  # on_stop states, while readers and the publisher still run
        self.stop_readers(timeout=min(5.0, left(1.0)))
        for comp in reversed(self.components):
            try:
                comp.stop()
            except Exception:
                log.exception("stopping %r failed", comp)
        # Normally one commit; a spool refusing writes gets a third of the time left.
        if not self.outbox.flush(timeout=left(1.0) / 3):
            log.error("could not commit the last readings to the spool (%s)",
                      self.outbox.spool_error or "timed out")
        self.publisher.stop(left(1.0))
        self.outbox.stop(max(0.5, left()))
        from gateway.clock import default_clock, set_default_clock

        if default_clock() is self.clock:
            set_default_clock(None)  # the next gateway in this process configures its own
        self.buses.close()
        if self.sim is not None:
            self.sim.close()
        log.info("stopped")

    def alive_problems(self, max_age: float | None = None) -> list[str]:
        """Threads that died or stopped making progress (for the watchdog)."""
        problems: list[str] = []
        now = time.monotonic()
        if not self.outbox.alive:
            problems.append("outbox spooler is not running")
        if not self.publisher.alive:
            problems.append("publisher is not running")
        elif max_age is not None and now - self.publisher.heartbeat > max_age:
            problems.append(f"publisher stuck for {now - self.publisher.heartbeat:.0f} s")
        if self.control is not None and not self.control.alive:
            problems.append("control thread is not running")
        for name, r in self.readers.items():
            if not r.alive:
                problems.append(f"reader {name} is not running")
            elif max_age is not None:
                # Each device says how long it may rightly go without a beat (its
                # interval, its backoff cap, a blocking read's timeout).
                allowed = max_age + 2 * r.stall_allowance
                if now - r.heartbeat > allowed:
                    problems.append(f"reader {name} stuck for {now - r.heartbeat:.0f} s")
        for comp in self.components:
            # Components with a thread of their own (inference supervisor, metrics server).
            if not comp.alive:
                problems.append(f"{type(comp).__name__} is not running")
        return problems

    # -- signals -----------------------------------------------------------------------
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_stop(signum: int, frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.request_stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
