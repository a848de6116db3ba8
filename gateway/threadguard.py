"""Long-lived threads that survive their own work.

Every thread of the daemon runs its loop through `run_guarded`: an exception of any
type (every `Exception` subclass, RecursionError and MemoryError included) that
escapes one unit of work is logged with the thread's name and traceback, counted by
the owner's `on_error`, and the loop starts over after a short, growing pause (so
a bug that fires on every round logs once every few seconds, not in a tight loop).

The thread also gets its name where the kernel shows it (`top -H`; gateway.libc).

What is not an `Exception` (SystemExit, KeyboardInterrupt, GeneratorExit) means
"stop" and still ends the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway.libc import name_native_thread

log = logging.getLogger("gateway.threads")

#: A loop that ran this long before failing starts over with the shortest pause.
_HEALTHY_RUN_S = 60.0


def run_guarded(
    name: str,
    loop: Callable[[], None],
    *,
    wait: Callable[[float], bool],
    on_error: Callable[[Exception], None] | None = None,
    first_pause: float = 0.1,
    max_pause: float = 5.0,
) -> None:
    """Run `loop` until it returns; restart it after any exception.

    `wait(seconds)` pauses between restarts and returns True when the owner asked the
    thread to stop (then the thread ends instead of restarting).
    """
    name_native_thread(threading.current_thread().name)
    pause = first_pause
    while True:
        started = time.monotonic()
        try:
            loop()
            return
        except Exception as exc:
            if time.monotonic() - started > _HEALTHY_RUN_S:
                pause = first_pause
            log.error("%s: unexpected %s: %s; the thread goes on", name, type(exc).__name__,
                      exc, exc_info=exc)
            if on_error is not None:
                try:
                    on_error(exc)
                except Exception:
                    log.exception("%s: counting an error failed", name)
        if wait(pause):
            return
        pause = min(max_pause, pause * 2)
