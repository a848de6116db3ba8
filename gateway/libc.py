"""glibc's allocator, where it helps a long-running daemon (no-ops off glibc).

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
def _libc() -> Any | None:
    try:
        return ctypes.CDLL(None)  # the process's own symbols: libc's on glibc
    except OSError as exc:
        log.debug("libc unavailable: %s", exc)
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's per-thread malloc arenas (as MALLOC_ARENA_MAX) before threads start."""
    libc = _libc()
    try:
        return libc is not None and bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX (malloc.h)
    except AttributeError as exc:
        log.debug("mallopt unavailable: %s", exc)
        return False


def trim_heap() -> bool:
    """Give free heap memory back to the system (glibc malloc_trim). True if any was."""
    libc = _libc()
    try:
        return libc is not None and bool(libc.malloc_trim(0))
    except AttributeError as exc:
        log.debug("malloc_trim unavailable: %s", exc)
        return False
