"""A wake-up token: how one thread wakes another that sleeps until a deadline.

`threading.Condition.wait` allocates a lock for every wait and runs a page of Python
around it. On the threads that sleep between every round of work (a bus poller until
its next slot, the spooler until readings come) that is the larger part of a wake-up's
cost: measured on the 2-core VM of the benchmarks, a timed-out `Condition.wait` cost
120-137 µs of the thread's CPU, the bare lock below 88-106 µs; one woken by another
thread 32-36 µs against 23-24 µs (benchmarks/bench_smallpi.py counts them per reading).

The token is one `threading.Lock`, held while no wake-up is pending: `set()` releases
it (any thread may release a plain Lock), `wait()` acquires it. The sleeper keeps its
state under a lock of its own, checks it, and only then waits, so a `set()` that
comes between the check and the wait leaves the token for the wait to take at once.
A token left by a wake-up the sleeper did not need only makes its next wait return
early: a sleeper always checks its state again after waking.
"""

from __future__ import annotations

import threading


class Wakeup:
    """A binary semaphore for one sleeping thread: `set()` from anywhere, `wait()` there."""

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token = threading.Lock()
        self._token.acquire()  # held: no wake-up pending

    def set(self) -> None:
        """Wake the sleeper, or its next wait if it is not asleep yet."""
        try:
            self._token.release()
        except RuntimeError:
            # Already released: a wake-up is pending, and one is all the sleeper needs.
            return

    def wait(self, timeout: float | None) -> bool:
        """Sleep until `set()` (True) or `timeout` seconds (False; None: no limit)."""
        if timeout is None:
            return self._token.acquire()
        return self._token.acquire(True, max(0.0, timeout))

    def clear(self) -> None:
        """Drop a pending wake-up."""
        self._token.acquire(False)
