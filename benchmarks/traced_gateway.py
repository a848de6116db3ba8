"""`python -m gateway`, with tracemalloc on: for telling a Python object leak from C-heap growth.

bench_outage_rss.py --trace runs the gateway through this. At each SIGUSR2 the gateway
(after a full garbage collection) writes one line to the pipe whose fd is EG_TRACE_FD:
the bytes Python holds in objects (tracemalloc's "traced" figure) and the bytes SQLite
holds (`sqlite3_memory_used()`, its page caches and prepared statements; -1 where it
cannot be asked). Both stay flat when nothing keeps growing; RSS beside them also counts
what the allocators keep of freed memory. tracemalloc makes the process larger and slower,
so RSS is measured without it (bench_outage_rss.py without --trace).
"""

from __future__ import annotations

import _sqlite3
import ctypes
import gc
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _sqlite_memory_used() -> Any:
    """SQLite's `sqlite3_memory_used`, or None. Through the sqlite3 extension's own handle:
    dlsym finds the symbol in the libsqlite3 it links, or in the extension itself where
    SQLite is built in."""
    try:
        used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    except (OSError, AttributeError):
        return None
    used.restype = ctypes.c_int64
    return used


SQLITE_MEMORY_USED = _sqlite_memory_used()


def _report(signum: int, frame: FrameType | None) -> None:
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    sqlite = int(SQLITE_MEMORY_USED()) if SQLITE_MEMORY_USED is not None else -1
    # One write, shorter than PIPE_BUF: the reader gets the line whole.
    os.write(int(os.environ["EG_TRACE_FD"]), f"{traced} {sqlite}\n".encode())


def main() -> int:
    tracemalloc.start(1)  # one frame: the figure is all that is read, not where
    signal.signal(signal.SIGUSR2, _report)
    from gateway.cli import main as gateway_main

    return gateway_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
