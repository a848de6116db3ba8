"""Serial readers: a streaming reader (NMEA, line protocols) and a polled Modbus RTU reader.

StreamReader: one thread per port. It blocks in `read(max(1, in_waiting))`
(returns as soon as bytes arrive, or after the port's `timeout`), frames
records with a hard length cap (lines, or NMEA sentences), decodes them and
emits records. When the port errors or disappears it closes it, logs once
(health "failing"), and retries opening the *same path* with capped backoff,
so a udev by-id symlink that comes back is picked up; decoding resumes at the
next complete record.

ModbusReader: a PolledReader per slave. Slaves sharing one RS-485 port share
one pymodbus client and one lock (`SharedPorts`), so their requests never
interleave on the wire.

In simulate mode the path comes from the simulator (`world.extras[name].path`,
a symlink to a real pty), never from `cfg.port`.
"""

from __future__ import annotations

import errno
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gateway.catalog.spec import Decode, Framer

# ModbusRtuConfig, register_specs
from gateway.config.model import SerialDevice
from gateway.protocols.framer import LineFramer
from gateway.protocols.modbus import ModbusRtuConfig, crc_ok, decode_map, plan_blocks, register_specs
from gateway.readers.base import Backoff, PolledReader, Reader, ReaderContext
from gateway.reading import ABSENT

log = logging.getLogger("gateway.readers.serial")

PARITY = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}
#: Reopen attempts back off from BACKOFF_BASE up to BACKOFF_CAP seconds.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 5.0


def port_path(cfg: SerialDevice, ctx: ReaderContext) -> str:
    """The path to open: the simulator's pty symlink in simulate mode, else cfg.port."""
    if ctx.simulate:
        extras = ctx.sim.extras if ctx.sim is not None else {}
        if cfg.name not in extras:
            # An OSError like a missing port: counted and retried, never fatal to the thread.
            raise FileNotFoundError(
                errno.ENOENT, f"simulate mode but no simulated serial device for {cfg.name!r}"
            )
        path: str = extras[cfg.name].path
        return path
    return cfg.port


def open_serial(path: str, cfg: SerialDevice) -> Any:
    import serial

    return serial.Serial(
        path, baudrate=cfg.baudrate, bytesize=cfg.bytesize, parity=PARITY[cfg.parity],
        stopbits=cfg.stopbits, timeout=cfg.timeout,
    )


@dataclass
class LineCommand:
    """A command line for the device on a stream reader's port (a serial_line output).

    Written by the reader's own thread between reads; `done` gets the reply line that
    matched `expect` ("" without one), or the exception that says why it failed.
    """

    data: bytes
    expect: re.Pattern[str] | None
    timeout: float
    done: Future[str] = field(default_factory=Future)
    deadline: float = 0.0


class StreamReader(Reader):
    """Reads a line-oriented serial stream and emits decoded records."""

    def __init__(self, cfg: SerialDevice, ctx: ReaderContext, decode: Decode,
                 interval: float | None = None, max_line: int = 1024,
                 silence_timeout: float = 10.0, delimiter: bytes = b"\n",
                 opener: Callable[[str, SerialDevice], Any] = open_serial,
                 framer: Framer | None = None) -> None:
        super().__init__(cfg.name, ctx)
        self.cfg = cfg
        self.decode = decode
        #: Publish at most this often (None: every record). Used by the watchdog too.
        self.interval = interval
        self.silence_timeout = silence_timeout
        self.framer: Framer = framer if framer is not None else LineFramer(delimiter, max_line)
        self.opener = opener
        self.backoff = Backoff(BACKOFF_BASE, BACKOFF_CAP)
        self.port: Any = None
        self.path: str | None = None
        self._port_lock = threading.Lock()
        self._next_emit = 0.0
        self._last_valid = time.monotonic()
        self._silence_reported = False
        self._decoder_bugs_logged: set[type[Exception]] = set()
        self.counters = ctx.health.counters
        self._commands: queue.SimpleQueue[LineCommand] = queue.SimpleQueue()
        self._awaiting: LineCommand | None = None

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    @property
    def stall_allowance(self) -> float:
        # It beats after each read, which may block for the port's timeout, and waits
        # out its backoff while the port is gone.
        return max(self.interval or 0.0, self.backoff.cap, self.cfg.timeout)

    def submit(self, command: LineCommand) -> Future[str]:
        """Have this reader's thread write `command` between reads (any thread)."""
        self._commands.put(command)
        self._interrupt_read()
        return command.done

    def _interrupt_read(self) -> None:
        """Wake a read blocked in select() at once instead of after `timeout`."""
        with self._port_lock:
            port = self.port
        if port is not None:
            try:
                port.cancel_read()
            except (OSError, AttributeError, ValueError, TypeError) as exc:
                log.debug("%s: cancel_read failed: %s", self.name, exc)

    def _run_commands(self) -> None:
        """Write the next command (one at a time: a reply must not be mistaken for another's)."""
        waiting = self._awaiting
        if waiting is not None:
            if time.monotonic() < waiting.deadline:
                return
            self._awaiting = None
            pattern = waiting.expect.pattern if waiting.expect is not None else ""
            waiting.done.set_exception(TimeoutError(
                f"no reply matching {pattern!r} within {waiting.timeout:g} s"))
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            if not cmd.done.set_running_or_notify_cancel():
                continue
            if self.port is None:
                cmd.done.set_exception(ConnectionError(f"{self.cfg.port} is not open "
                                                       f"({self.ctx.health.last_error})"))
                continue
            try:
                # Just (re)opened, the framer skips to the next line end; the reply to
                # this command starts a line of its own: take what came before, then sync.
                pending = self.port.in_waiting
                if pending:
                    self._handle(self.port.read(pending))
                self.framer.synced()
                self.port.write(cmd.data)
                self.port.flush()
            except (OSError, ValueError, TypeError) as exc:
                cmd.done.set_exception(ConnectionError(f"write to {self.cfg.port} failed: {exc}"))
                continue
            self._count("commands_written")
            if cmd.expect is None:
                cmd.done.set_result("")
                continue
            cmd.deadline = time.monotonic() + cmd.timeout
            self._awaiting = cmd
            return

    def _fail_commands(self, why: str) -> None:
        waiting, self._awaiting = self._awaiting, None
        if waiting is not None:
            waiting.done.set_exception(ConnectionError(why))
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            if cmd.done.set_running_or_notify_cancel():
                cmd.done.set_exception(ConnectionError(why))

    def stop(self) -> None:
        super().stop()
        self._interrupt_read()

    def after_crash(self, exc: Exception) -> None:
        super().after_crash(exc)  # counted; the port is closed and opened again
        self._fail_commands(f"the reader of {self.cfg.port} started over after an error")

    def run_loop(self) -> None:
        stop = self.stop_event
        while not stop.is_set():
            self.beat()
            if self.port is None and not self._open():
                self._fail_commands(f"{self.cfg.port} is not open ({self.ctx.health.last_error})")
                stop.wait(self.backoff.next_delay())
                continue
            self._run_commands()
            try:
                port = self.port
                data = port.read(max(1, port.in_waiting))
            except (OSError, ValueError, TypeError) as exc:
                # SerialException is an OSError; a port closed under us may raise
                # TypeError/ValueError inside pyserial. All mean: the device is gone.
                if stop.is_set():
                    return
                self._count("port_errors")
                self.ctx.failed(exc)
                self.close()
                stop.wait(self.backoff.next_delay())
                continue
            if data:
                self._count("bytes_read", len(data))
                self._handle(data)
            self._check_silence()

    def _open(self) -> bool:
        try:
            path = port_path(self.cfg, self.ctx)
            port = self.opener(path, self.cfg)
        except (OSError, ValueError) as exc:
            self._count("open_errors")
            self.ctx.failed(exc)
            return False
        with self._port_lock:
            self.port = port
            self.path = path
        # Whatever was half-received before the port (re)opened may not be a whole record.
        self.framer.resync()
        self._count("opens")
        self._last_valid = time.monotonic()
        log.info("%s: opened %s", self.name, path)
        return True

    def _handle(self, data: bytes) -> None:
        for line in self.framer.feed(data):
            waiting = self._awaiting
            if waiting is not None and waiting.expect is not None:
                text = line.decode("utf-8", "replace").strip()
                if waiting.expect.search(text):
                    self._awaiting = None
                    waiting.done.set_result(text)
                    continue  # the device's reply to a command, not a reading
            try:
                records = self.decode(line)
            except Exception as exc:
                # A decoder counts what it cannot decode and returns nothing; raising is a
                # bug (or a line it was not built for): counted, and the next line is read.
                self._count("decode_errors")
                self.ctx.crashed(exc)
                if type(exc) not in self._decoder_bugs_logged:
                    self._decoder_bugs_logged.add(type(exc))
                    log.error("%s: the decoder raised on a %d-byte line; line skipped",
                              self.name, len(line), exc_info=exc)
                continue
            for record in records:
                self._last_valid = time.monotonic()
                self._silence_reported = False
                self.backoff.reset()
                self.ctx.succeeded()
                self._publish(record)
        self.counters.update(self.framer.counters)

    def _publish(self, record: dict[str, Any]) -> None:
        if not record:
            return
        if self.interval is not None:
            now = time.monotonic()
            # A small tolerance so a 1 Hz receiver with interval 1s is not halved by jitter.
            if now < self._next_emit:
                self._count("rate_limited")
                return
            self._next_emit = now + self.interval * 0.95
        self.ctx.emit(record)

    def _check_silence(self) -> None:
        quiet = time.monotonic() - self._last_valid
        if quiet > self.silence_timeout and not self._silence_reported:
            self._silence_reported = True
            self._count("silences")
            self.ctx.failed(TimeoutError(f"no valid data for {quiet:.0f} s"))

    def close(self) -> None:
        with self._port_lock:
            port, self.port = self.port, None
        self._fail_commands(f"{self.cfg.port} was closed")
        if port is not None:
            try:
                port.close()
            except (OSError, ValueError, TypeError) as exc:
                log.debug("%s: close failed: %s", self.name, exc)


# ---------------------------------------------------------------------- Modbus RTU


class SlaveException(ValueError):
    """The slave answered with a Modbus exception response (§7 of the application protocol)."""

    def __init__(self, function: int, code: int) -> None:
        names = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                 4: "slave device failure", 6: "slave device busy"}
        super().__init__(f"exception {code} ({names.get(code, 'unknown')}) to function {function}")
        self.code = code


@dataclass
class SharedPort:
    """One pymodbus client and one lock per physical port."""

    path: str
    settings: tuple[Any, ...]
    client: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    #: Per-request CRC check state, fed by pymodbus' trace_packet hook.
    expect_len: int = 0
    checked: bool = True
    crc_errors: int = 0


class SharedPorts:
    """Registry of shared Modbus ports (refcounted; the last user closes it)."""

    def __init__(self) -> None:
        self._ports: dict[str, SharedPort] = {}
        self._guard = threading.Lock()

    def acquire(self, path: str, cfg: ModbusRtuConfig) -> SharedPort:
        settings = (cfg.baudrate, cfg.bytesize, cfg.parity, cfg.stopbits, cfg.timeout, cfg.retries)
        with self._guard:
            port = self._ports.get(path)
            if port is None:
                port = _new_port(path, cfg, settings)
                self._ports[path] = port
            elif port.settings != settings:
                raise ValueError(
                    f"{path} is shared with different serial settings {port.settings} "
                    f"(this device: {settings}); devices on one RS-485 line must agree"
                )
            port.users += 1
            return port

    def release(self, port: SharedPort) -> None:
        with self._guard:
            port.users -= 1
            if port.users <= 0:
                self._ports.pop(port.path, None)
                with port.lock:
                    port.client.close()


def _new_port(path: str, cfg: ModbusRtuConfig, settings: tuple[Any, ...]) -> SharedPort:
    from pymodbus.client import ModbusSerialClient
    from pymodbus.framer import FramerType

    holder: list[SharedPort] = []

    def trace(sending: bool, data: bytes) -> bytes:
        # Count corrupted replies: the first time a whole reply is in, check its CRC.
        p = holder[0]
        if sending:
            p.checked = False
        elif not p.checked and len(data) >= 5:
            length = 5 if data[1] & 0x80 else p.expect_len
            if length and len(data) >= length:
                p.checked = True
                if not crc_ok(data[:length]):
                    p.crc_errors += 1
        return data

    client = ModbusSerialClient(
        path, framer=FramerType.RTU, baudrate=cfg.baudrate, bytesize=cfg.bytesize,
        parity=PARITY[cfg.parity], timeout=cfg.timeout, retries=cfg.retries, trace_packet=trace,
        stopbits=cfg.stopbits,  # type: ignore[arg-type]  # typed int; pyserial takes 1.5 as well
    )
    port = SharedPort(path, settings, client)
    holder.append(port)
    return port


PORTS = SharedPorts()


class ModbusReader(PolledReader):
    """Polls one slave's register map on its interval."""

    def __init__(self, cfg: ModbusRtuConfig, ctx: ReaderContext, ports: SharedPorts = PORTS) -> None:
        super().__init__(cfg.name, ctx, cfg.interval, backoff_cap=max(cfg.interval, 1.0))
        self.cfg = cfg
        self.ports = ports
        self.specs = register_specs(cfg)
        self.blocks = plan_blocks(self.specs)
        self.port: SharedPort | None = None
        self.counters = ctx.health.counters
        self._reply_at: float | None = None
        # pymodbus logs every failed request at ERROR; our health logs once per state change.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    @property
    def stall_allowance(self) -> float:
        # A request may block for the port's timeout (per retry).
        return max(super().stall_allowance, self.cfg.timeout)

    def open(self) -> None:
        try:
            import pymodbus.client  # noqa: F401
        except ImportError:
            # An OSError so it is logged once as a device fault, not as a crash per retry.
            raise OSError(
                errno.ENOENT, "pymodbus is not installed: pip install 'edge-gateway[modbus]'"
            ) from None
        path = port_path(self.cfg, self.ctx)
        self.port = self.ports.acquire(path, self.cfg)

    def poll(self) -> dict[str, Any]:
        from pymodbus.exceptions import ModbusException

        port = self.port
        assert port is not None
        client = port.client
        regs: dict[int, int] = {}
        self._reply_at = None
        with port.lock:
            if not client.connected and not client.connect():
                self._count("open_errors")
                raise ConnectionError(f"cannot open {port.path}")
            read = (client.read_holding_registers if self.cfg.function == "holding"
                    else client.read_input_registers)
            fc = 3 if self.cfg.function == "holding" else 4
            for block in self.blocks:
                before = port.crc_errors
                port.expect_len = 5 + 2 * block.count
                try:
                    rr = read(block.address, count=block.count, device_id=self.cfg.slave)
                except ModbusException as exc:
                    self._account_crc(port, before)
                    if client.connected:
                        self._count("timeouts")
                        raise TimeoutError(f"slave {self.cfg.slave}: no valid reply ({exc})") from None
                    self._count("port_errors")
                    raise ConnectionError(f"{port.path}: {exc}") from None
                self._account_crc(port, before)
                self._reply_at = time.time()
                if getattr(rr, "retries", 0):
                    self.counters["retries"] = self.counters.get("retries", 0) + rr.retries
                if rr.isError():
                    self._count("exception_responses")
                    raise SlaveException(fc, int(getattr(rr, "exception_code", 0)))
                words = list(rr.registers)
                if len(words) != block.count:
                    self._count("short_replies")
                    raise ValueError(f"asked {block.count} registers, got {len(words)}")
                for i, w in enumerate(words):
                    regs[block.address + i] = w
        values = decode_map(self.specs, regs)
        bad = sum(1 for v in values.values() if v is ABSENT)
        if bad:
            # One NaN register costs that value only (listed under `absent`), not the device.
            self.counters["bad_values"] = self.counters.get("bad_values", 0) + bad
        return values

    def measured_at(self, started: float) -> float:
        """When the (last) reply arrived, not when the poll began: the bus may have
        been busy with another slave, or retries took seconds."""
        return self._reply_at if self._reply_at is not None else started

    def _account_crc(self, port: SharedPort, before: int) -> None:
        if port.crc_errors > before:
            self.counters["crc_errors"] = self.counters.get("crc_errors", 0) + (
                port.crc_errors - before
            )

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            self.ports.release(port)
