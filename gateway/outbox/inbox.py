"""The bounded FIFO between the readers and the spooler thread."""

from __future__ import annotations

import threading
import time
from collections import deque

from gateway.wakeup import Wakeup


class Inbox:
    """The bounded FIFO between readers and the spooler.

    Many producers, one consumer that takes a whole batch at once. Unlike
    `queue.Queue` it wakes a producer waiting for room once per batch taken, not
    once per item, and the consumer only when the queue stops being empty (or
    reaches the length it waits for): a reader blocked on a full queue does not
    ping-pong with the spooler. The consumer sleeps on a wake-up token
    (gateway.wakeup), not a Condition: it sleeps once per burst of readings.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[object] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._wakeup = Wakeup()  # the consumer sleeps on it
        self._want = 0  # the sleeping consumer waits for this many items (0: awake)
        self._room_waiters = 0  # producers waiting for room (notified only if any)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: object, timeout: float | None = None) -> bool:
        """Append `item`, waiting up to `timeout` (0: not at all, None: as long as it takes)
        for room. False: still full."""
        with self._lock:
            items = self._items
            if len(items) >= self.maxsize:
                if timeout == 0:
                    return False
                self._room_waiters += 1
                try:
                    if not self._not_full.wait_for(lambda: len(items) < self.maxsize, timeout):
                        return False
                finally:
                    self._room_waiters -= 1
            items.append(item)
            if len(items) == self._want:
                self._want = 0
                self._wakeup.set()
            return True

    def get(self, timeout: float | None = None) -> object | None:
        """The oldest item, waiting up to `timeout` (None: forever); None if none came."""
        if not self._wait(1, timeout):
            return None
        with self._lock:
            item = self._items.popleft()
            if self._room_waiters:
                self._not_full.notify_all()
            return item

    def wait_len(self, n: int, timeout: float) -> bool:
        """Wait up to `timeout` until at least `n` items are queued (the consumer is
        woken once, when the n-th arrives). True if they are."""
        return self._wait(n, timeout)

    def _wait(self, n: int, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self._items) >= n:
                    self._want = 0
                    return True
                self._want = n  # the put that makes it n sets the wake-up
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                with self._lock:
                    self._want = 0
                    return len(self._items) >= n
            self._wakeup.wait(left)

    def take(self, limit: int) -> list[object]:
        """Up to `limit` of the oldest items, without waiting."""
        with self._lock:
            items = self._items
            n = min(limit, len(items))
            out = [items.popleft() for _ in range(n)]
            if n and self._room_waiters:
                self._not_full.notify_all()
            return out
