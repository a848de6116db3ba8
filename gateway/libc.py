"""glibc's allocator, where it helps a long-running daemon, and thread names the kernel
shows (no-ops off glibc/Linux).

- Fewer malloc arenas: every thread that allocates gets an arena of its own (up to 8
  per core); a daemon of a dozen mostly idle threads pays RSS for each.
- The heap given back after a backlog: draining a broker outage's backlog allocates
  and frees a lot at once, and free() keeps most of it mapped. `malloc_trim(0)`
  returns the free pages to the system (benchmarks/bench_outage_rss.py).
"""

from __future__ import annotations

import ctypes
import logging
from functools import cache
from typing import Any

log = logging.getLogger("gateway")


@cache
def process_libc() -> Any | None:
    """The process's own C symbols (libc's on glibc and musl), opened once; None if not."""
    try:
        return ctypes.CDLL(None)  # the process's own symbols: libc's on glibc
    except OSError as exc:
        log.debug("libc unavailable: %s", exc)
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's per-thread malloc arenas (as MALLOC_ARENA_MAX) before threads start."""
    libc = process_libc()
    try:
        return libc is not None and bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX (malloc.h)
    except AttributeError as exc:
        log.debug("mallopt unavailable: %s", exc)
        return False


def trim_heap() -> bool:
    """Give free heap memory back to the system (glibc malloc_trim). True if any was."""
    libc = process_libc()
    try:
        return libc is not None and bool(libc.malloc_trim(0))
    except AttributeError as exc:
        log.debug("malloc_trim unavailable: %s", exc)
        return False


#: prctl(2) PR_SET_NAME: the calling thread's name, at most 15 bytes and a NUL.
_PR_SET_NAME = 15


def name_native_thread(name: str) -> bool:
    """Give the calling thread `name` where the kernel shows it (`top -H`, `ps -L`,
    /proc/PID/task/TID/comm): Python before 3.14 leaves every thread named after the
    interpreter, so a user (and benchmarks/bench_smallpi.py) could not tell which of the
    daemon's threads uses the CPU. Names longer than 15 bytes are cut."""
    libc = process_libc()
    try:
        return libc is not None and libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0) == 0
    except AttributeError as exc:
        log.debug("prctl unavailable: %s", exc)
        return False
