"""The bounded FIFO between the readers and the spooler thread."""

from __future__ import annotations

import threading
from collections import deque


class Inbox:
    """The bounded FIFO between readers and the spooler.

    Many producers, one consumer that takes a whole batch at once. Unlike
    `queue.Queue` it wakes a producer waiting for room once per batch taken, not
    once per item, and the consumer only when the queue stops being empty: a
    reader blocked on a full queue does not ping-pong with the spooler.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[object] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._want = 0  # a consumer in wait_len() waits for this many items

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: object, timeout: float | None = None) -> bool:
        """Append `item`, waiting up to `timeout` (0: not at all, None: as long as it takes)
        for room. False: still full."""
        with self._lock:
            items = self._items
            full = len(items) >= self.maxsize
            if full and not (timeout != 0 and self._not_full.wait_for(
                lambda: len(items) < self.maxsize, timeout
            )):
                return False
            items.append(item)
            if len(items) == 1 or len(items) == self._want:
                self._not_empty.notify()
            return True

    def get(self, timeout: float | None = None) -> object | None:
        """The oldest item, waiting up to `timeout` (None: forever); None if none came."""
        with self._lock:
            if not self._items and not self._not_empty.wait_for(lambda: bool(self._items),
                                                                timeout):
                return None
            item = self._items.popleft()
            self._not_full.notify_all()
            return item

    def wait_len(self, n: int, timeout: float) -> bool:
        """Wait up to `timeout` until at least `n` items are queued (the consumer is
        woken once, when the n-th arrives). True if they are."""
        with self._lock:
            self._want = n
            try:
                return self._not_empty.wait_for(lambda: len(self._items) >= n, timeout)
            finally:
                self._want = 0

    def take(self, limit: int) -> list[object]:
        """Up to `limit` of the oldest items, without waiting."""
        with self._lock:
            items = self._items
            n = min(limit, len(items))
            out = [items.popleft() for _ in range(n)]
            if n:
                self._not_full.notify_all()
            return out
