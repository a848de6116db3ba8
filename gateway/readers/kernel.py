"""Readers for what the kernel drives: sysfs sensors (polled) and GPIO inputs (edge events).

`KernelReader` polls a sysfs driver (1-Wire, IIO, hwmon, the Pi's health) on the
usual drift-free schedule, in a thread of its own: a 1-Wire conversion or a DHT
read blocks for up to a second, which must not hold up an I2C bus thread. Some
kernel drivers fail routinely (the DHT11/DHT22 driver answers EIO or ETIMEDOUT on a
fair share of reads: the sensor's timing is at the edge of what a non-real-time
kernel can sample), so errors listed in `routine` are retried within the poll after
`retry_delay`, and only a poll whose retries all failed counts as a failure. The log
sees a state change, not every retry.

`GpioReader` blocks in `select()` on the line's event file descriptor and a wake-up
pipe: no polling. A contact is published when its debounced state changes and
every `interval`; a pulse counter every `interval`, with a total that is kept in
a small state file so that a rain gauge's total survives restarts.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from gateway.catalog.spec import DeviceSpec, SysfsEnv
from gateway.config.model import DeviceBase
from gateway.drivers.gpio_contact import GpioContactConfig
from gateway.drivers.gpio_input import ContactDebouncer, Edge, GpiodInput, GpioLineConfig, PulseCounter
from gateway.drivers.pulse_counter import PulseCounterConfig, total_key
from gateway.readers.base import Backoff, PolledReader, Reader, ReaderContext, describe
from gateway.wakepipe import WakePipe

log = logging.getLogger("gateway.readers.kernel")

def kernel_env(ctx: ReaderContext) -> SysfsEnv:
    """Where a kernel device's files are: `/`, or the simulator's tree in simulate mode."""
    sysfs = ctx.sim.sysfs if ctx.simulate and ctx.sim is not None else None
    root = Path(sysfs.root) if sysfs is not None else Path("/")
    read_text: Callable[[Path], str] = sysfs.read_text if sysfs is not None else Path.read_text
    return SysfsEnv(root=root, read_text=read_text, counters=ctx.health.counters,
                    state_dir=ctx.state_dir)


def make_kernel_reader(dev: DeviceBase, spec: DeviceSpec, ctx: ReaderContext) -> Reader:
    """The reader of a device of kind `kernel`: a sysfs poller, or a GPIO edge reader."""
    if spec.kernel_poll is not None:
        poll = spec.kernel_poll
        return KernelReader(dev.name, ctx, dev.interval, poll.make(dev, kernel_env(ctx)),
                            routine=poll.routine, retries=poll.retries(dev),
                            retry_delay=poll.retry_delay(dev))
    if isinstance(dev, GpioContactConfig):
        return GpioReader(dev.name, ctx, line_opener(dev, ctx), interval=dev.interval,
                          mode="contact", debounce=dev.debounce)
    if isinstance(dev, PulseCounterConfig):
        state_dir = kernel_env(ctx).state_dir
        return GpioReader(
            dev.name, ctx, line_opener(dev, ctx), interval=dev.interval, mode="counter",
            debounce=dev.debounce,
            state_file=None if state_dir is None else state_dir / f"{dev.name}.pulses",
            per_pulse=dev.per_pulse, amount_key=dev.amount_key,
            total_key=None if dev.amount_key is None else total_key(dev.amount_key))
    raise ValueError(f"{dev.name}: no reader for the kernel device {dev.driver!r}")


def line_opener(cfg: GpioLineConfig, ctx: ReaderContext) -> Callable[[], EdgeSource]:
    """The line to read: the simulator's in simulate mode, else libgpiod's."""
    if ctx.simulate:
        lines: Mapping[str, EdgeSource] = {}
        if ctx.sim is not None:
            lines = ctx.sim.gpio_lines

        def open_sim() -> EdgeSource:
            if cfg.name not in lines:
                raise FileNotFoundError(errno.ENOENT, f"no simulated GPIO line for {cfg.name!r}")
            return lines[cfg.name]

        return open_sim

    def open_real() -> EdgeSource:
        return GpiodInput(cfg.chip, cfg.line, bias=cfg.bias, active_low=cfg.active_low,
                          consumer=f"edge-gateway:{cfg.name}")

    return open_real


class KernelReader(PolledReader):
    """Polls a function of the sysfs root; routine errors retried within the poll."""

    def __init__(self, name: str, ctx: ReaderContext, interval: float,
                 read: Callable[[], dict[str, Any]], routine: frozenset[int] = frozenset(),
                 retries: int = 0, retry_delay: float = 2.0) -> None:
        super().__init__(name, ctx, interval)
        self.read = read
        self.routine = routine
        self.retries = retries
        self.retry_delay = retry_delay

    def poll(self) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return self.read()
            except OSError as exc:
                if exc.errno not in self.routine or attempt >= self.retries:
                    raise
                attempt += 1
                counters = self.ctx.health.counters
                counters["retried_reads"] = counters.get("retried_reads", 0) + 1
                log.debug("%s: %s; retrying (%d/%d)", self.name, describe(exc), attempt, self.retries)
                if self.stop_event.wait(self.retry_delay):
                    raise


class EdgeSource(Protocol):
    """A requested GPIO input line (libgpiod's LineRequest, or the simulator's)."""

    @property
    def fd(self) -> int: ...

    def read_edges(self) -> list[Edge]: ...

    def level(self) -> bool: ...

    def close(self) -> None: ...


class GpioReader(Reader):
    """A contact or a pulse counter on one GPIO line."""

    def __init__(self, name: str, ctx: ReaderContext, open_line: Callable[[], EdgeSource],
                 interval: float, mode: str, debounce: float, rising: bool = True,
                 state_file: Path | None = None, per_pulse: float | None = None,
                 amount_key: str | None = None, total_key: str | None = None) -> None:
        super().__init__(name, ctx)
        self.open_line = open_line
        self.interval = interval
        self.mode = mode
        self.debounce = debounce
        self.state_file = state_file
        self.per_pulse = per_pulse
        self.amount_key = amount_key
        self.total_key = total_key
        self.counter = PulseCounter(debounce, rising, total=self._load_total())
        self.contact = ContactDebouncer(debounce)
        self.backoff = Backoff(0.2, 5.0)
        self._wake = WakePipe()
        self._line: EdgeSource | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def stop(self) -> None:
        super().stop()
        self._wake.wake()

    def close(self) -> None:
        if self._line is not None:
            line, self._line = self._line, None
            line.close()

    def run_loop(self) -> None:
        try:
            self._run()
        finally:
            self._wake.close()

    def _run(self) -> None:
        stop = self.stop_event
        next_publish = (int(time.monotonic() / self.interval) + 1) * self.interval
        while not stop.is_set():
            if self._line is None and not self._open():
                continue
            try:
                next_publish = self._step(next_publish)
            except Exception as exc:
                # A line that fails (chip gone, EIO) is closed and reopened with backoff.
                self.ctx.failed(exc)
                if not isinstance(exc, OSError):
                    log.error("%s: unexpected error", self.name, exc_info=True)
                self.close()
                stop.wait(self.backoff.next_delay())
            self.beat()

    def _open(self) -> bool:
        try:
            self._line = self.open_line()
        except Exception as exc:
            self.ctx.failed(exc)
            if not isinstance(exc, OSError):
                log.error("%s: unexpected error opening the line", self.name, exc_info=True)
            self.stop_event.wait(self.backoff.next_delay())
            return False
        self.backoff.reset()
        if self.mode == "contact":
            self.contact.settle(self._line.level(), time.monotonic_ns())
            self._emit_contact()
        self.ctx.succeeded()
        return True

    def _step(self, next_publish: float) -> float:
        line = self._line
        assert line is not None
        now = time.monotonic()
        deadline = next_publish
        settle = self.contact.settle_at() if self.mode == "contact" else None
        if settle is not None:
            deadline = min(deadline, settle / 1e9)
        wake = self._wake.fileno()
        ready, _, _ = select.select([line.fd, wake], [], [], max(0.0, deadline - now))
        if wake in ready:
            return next_publish
        if line.fd in ready:
            edges = line.read_edges()
            if self.mode == "contact":
                self.contact.feed(edges)
            else:
                self.counter.feed(edges)
        now = time.monotonic()
        if (self.mode == "contact" and self.contact.settle_at() is not None
                and self.contact.settle(line.level(), time.monotonic_ns())):
            self._emit_contact()
            return next_publish
        if now >= next_publish:
            if self.mode == "contact":
                self._emit_contact()
            else:
                self._emit_count()
            next_publish = (int(now / self.interval) + 1) * self.interval
        return next_publish

    # -- readings -------------------------------------------------------------------------
    def _emit_contact(self) -> None:
        self.ctx.health.counters["bounces"] = self.contact.bounces
        if self.contact.state is not None:
            self.ctx.emit({"closed": self.contact.state})

    def _emit_count(self) -> None:
        pulses = self.counter.take()
        values: dict[str, Any] = {
            "pulses": pulses,
            "pulse_rate_hz": round(pulses / self.interval, 6),
            "pulses_total": self.counter.total,
        }
        if self.per_pulse is not None and self.amount_key is not None:
            values[self.amount_key] = round(pulses * self.per_pulse, 6)
            if self.total_key is not None:
                values[self.total_key] = round(self.counter.total * self.per_pulse, 6)
        self.ctx.health.counters["bounces"] = self.counter.bounces
        self._save_total()
        self.ctx.emit(values)

    def _load_total(self) -> int:
        if self.state_file is None:
            return 0
        try:
            return int(self.state_file.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.error("%s: cannot read the pulse total from %s (%s); counting on from 0",
                      self.name, self.state_file, exc)
            return 0

    def _save_total(self) -> None:
        """Write the total beside the spool (atomic rename: a crash leaves the old or the new)."""
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            tmp.write_text(f"{self.counter.total}\n")
            os.replace(tmp, self.state_file)
        except OSError as exc:
            counters = self.ctx.health.counters
            counters["total_not_saved"] = counters.get("total_not_saved", 0) + 1
            if counters["total_not_saved"] == 1:
                log.error("%s: cannot save the pulse total to %s: %s", self.name, self.state_file, exc)


__all__ = ["EdgeSource", "GpioReader", "KernelReader", "kernel_env", "make_kernel_reader"]
