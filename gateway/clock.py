"""Readings' timestamps on a machine without a real-time clock (a Raspberry Pi 4).

Until NTP has synchronised the clock, a Pi's wall time is whatever fake-hwclock or
timesyncd saved at the last shutdown: hours or days behind. The monotonic clock
is right all along, so a reading keeps both (`Reading.ts`, `Reading.mono`) and:

- taken while the clock is synchronised: published with its `ts`, as always;
- taken before, but encoded after the first synchronisation (same process): `ts`
  is corrected from the monotonic clock, `ts = wall_now - (mono_now - mono)`;
- encoded while unsynchronised: spooled with the wall time it had and a marker
  holding the boot id and the monotonic time. The publisher holds readings back
  while the clock is unsynchronised, up to `gateway.clock.hold` after boot; at
  publish time a marked reading of this boot is corrected once the clock is
  synchronised. Past the hold, or from an earlier boot (the monotonic clock
  restarted), it is published with its uncorrected `ts` and `"clock":
  "unsynced"`, so nothing is lost and nothing wrong goes out unlabelled.

Synchronised means (`gateway.clock.sync`):
- `kernel`: adjtimex(2) reports a synchronised clock (STA_UNSYNC clear; what
  timesyncd, chrony and ntpd set once they have disciplined the clock);
- `timesyncd`: /run/systemd/timesync/synchronized exists (timesyncd's own flag);
- `auto` (default): either of those; and when no time service runs at all (no
  timesyncd, chrony or ntpd: a container or VM whose clock the host keeps, a
  machine with an RTC), the clock is trusted, as there is nothing to wait for;
- `off`: always trusted.
Once synchronised, the clock is trusted until the daemon stops (a later loss of
NTP leaves it drifting by parts per million, not hours).
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from gateway.libc import process_libc

log = logging.getLogger("gateway.clock")

SyncSource = Literal["auto", "kernel", "timesyncd", "off"]

#: adjtimex(2): status bit "clock not synchronised" and the return value TIME_ERROR.
STA_UNSYNC = 0x0040
TIME_ERROR = 5
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
#: Present while a time service runs: timesyncd's runtime directory (made at its start),
#: chrony's and ntpd's.
TIME_SERVICES = (Path("/run/systemd/timesync"), Path("/run/chrony"), Path("/run/ntpd.pid"),
                 Path("/var/run/ntpd.pid"))
#: While unsynchronised, the sync state is looked at no more often than this.
RECHECK = 1.0

UNSYNCED = "unsynced"


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex (include/uapi/linux/timex.h); padded like the kernel's."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time", _Timeval), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


def kernel_synchronized() -> bool | None:
    """The kernel's view (adjtimex with no modes: read only). None if unavailable."""
    # The process's own symbols, not find_library("c"): that would run `ldconfig -p` in a
    # child at every look while the clock is unsynchronised, and import ctypes.util.
    libc = process_libc()
    if libc is None:
        return None
    try:
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError) as exc:
        log.debug("adjtimex unavailable: %s", exc)
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not tx.status & STA_UNSYNC


def timesyncd_synchronized(flag: Path = TIMESYNCD_FLAG) -> bool:
    return flag.exists()


def time_service_present(paths: tuple[Path, ...] = TIME_SERVICES) -> bool:
    return any(p.exists() for p in paths)


def probe_for(source: SyncSource, *,
              kernel: Callable[[], bool | None] = kernel_synchronized,
              flag: Path = TIMESYNCD_FLAG,
              services: tuple[Path, ...] = TIME_SERVICES) -> Callable[[], bool]:
    """The synchronised-or-not question for a `gateway.clock.sync` setting."""
    if source == "off":
        return lambda: True
    if source == "kernel":
        return lambda: bool(kernel())
    if source == "timesyncd":
        return lambda: timesyncd_synchronized(flag)

    def auto() -> bool:
        if kernel() or timesyncd_synchronized(flag):
            return True
        return not time_service_present(services)  # nothing will synchronise it: trust it

    return auto


def boot_id() -> str:
    """Short id of this boot (the monotonic clock starts again at every boot)."""
    try:
        raw = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii")
    except OSError:
        return "0"
    return raw.strip().replace("-", "")[:12] or "0"


# {"seq":N,"ts":"...","clock":"unsynced/BOOT/MONO_MS" -- what encode_payload writes first.
_MARKED = re.compile(rb'^(\{"seq":\d+,"ts":")([^"]*)(","clock":")unsynced/([0-9a-f]+)/(\d+)"')


class ClockWatch:
    """Whether the wall clock can be trusted, and what that means for a reading's `ts`.

    Thread-safe: readers' encoding (the spooler thread) and the publisher both ask.
    `probe`, `monotonic`, `wall` and `boot` are injectable for tests.
    """

    def __init__(self, source: SyncSource = "auto", hold: float = 600.0, *,
                 probe: Callable[[], bool] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, boot: str | None = None) -> None:
        self.source = source
        self.hold = hold
        self._probe = probe if probe is not None else probe_for(source)
        self._monotonic = monotonic
        self._wall = wall
        self.boot = boot if boot is not None else boot_id()
        self._lock = threading.Lock()
        #: Monotonic time the clock was first seen synchronised (None: not yet).
        self.synced_since: float | None = None
        self._checked_at: float | None = None
        self.corrected = 0
        self.marked = 0

    # -- the state -----------------------------------------------------------------------
    def synchronized(self) -> bool:
        if self.synced_since is not None:
            return True
        with self._lock:
            now = self._monotonic()
            if self.synced_since is None and (self._checked_at is None
                                              or now - self._checked_at >= RECHECK):
                first = self._checked_at is None
                self._checked_at = now
                if self._probe():
                    # Synchronised at the first look: as far as this process knows it always
                    # was, so no reading of ours needs correcting (-inf). Otherwise readings
                    # taken before this moment are corrected from the monotonic clock.
                    self.synced_since = float("-inf") if first else now
                    if not first:
                        log.info("clock: synchronised; readings taken before are corrected "
                                 "from the monotonic clock")
                elif first:
                    log.warning("clock: not synchronised yet (no NTP sync since boot); "
                                "readings are held up to %.0f s after boot, then published "
                                "marked \"clock\": \"unsynced\"", self.hold)
            return self.synced_since is not None

    def holding(self) -> bool:
        """True while the publisher should hold readings back (unsynchronised, and less
        than `hold` since boot)."""
        return not self.synchronized() and self._monotonic() < self.hold

    def next_check(self) -> float:
        """Seconds until holding() may change (for a publisher that sleeps)."""
        return RECHECK

    # -- a reading's timestamp --------------------------------------------------------------
    def stamp(self, ts: float, mono: float) -> tuple[float, str | None]:
        """The `ts` to encode for a reading taken at wall `ts` / monotonic `mono`, and the
        marker to encode with it (None: `ts` is right)."""
        if self.synchronized():
            assert self.synced_since is not None
            if mono >= self.synced_since:
                return ts, None
            self.corrected += 1
            return self._wall() - (self._monotonic() - mono), None
        self.marked += 1
        return ts, f"{UNSYNCED}/{self.boot}/{max(0, round(mono * 1000))}"

    def finish(self, payload: bytes) -> bytes:
        """The payload as it goes on the wire: a marked reading's `ts` corrected if it can
        be (synchronised now, same boot), else labelled `"clock":"unsynced"`."""
        if b'"clock":"unsynced/' not in payload[:100]:
            return payload
        m = _MARKED.match(payload)
        if m is None:
            return payload
        head, _, clock_key, boot, mono_ms = m.groups()
        rest = payload[m.end():]
        if boot.decode() == self.boot and self.synchronized():
            from gateway.reading import format_ts

            ts = self._wall() - (self._monotonic() - int(mono_ms) / 1000.0)
            self.corrected += 1
            return head + format_ts(ts).encode() + b'"' + rest
        return head + m.group(2) + clock_key + UNSYNCED.encode() + b'"' + rest


_default: ClockWatch | None = None


def default_clock() -> ClockWatch:
    """The process-wide clock (trusted until the daemon configures it)."""
    global _default
    if _default is None:
        _default = ClockWatch("off")
    return _default


def set_default_clock(clock: ClockWatch | None) -> None:
    global _default
    _default = clock

