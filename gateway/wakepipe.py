"""A self-pipe: how one thread wakes another that is blocked in select()."""

from __future__ import annotations

import os
import threading


class WakePipe:
    """Select on `fileno()` next to the descriptors a thread waits for; any thread may
    `wake()` it. A wake is one byte until the sleeper `drain()`s (cheap when repeated),
    and a no-op once closed: it never writes to a closed, perhaps reused, descriptor."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._lock = threading.Lock()
        self._closed = False
        self._pending = False

    def fileno(self) -> int:
        return self._r

    def write_fd(self) -> int:
        """The end wake() writes to (for `signal.set_wakeup_fd`: every signal then wakes
        the sleeper too; unset it before close())."""
        return self._w

    def wake(self) -> None:
        if self._pending:
            return
        with self._lock:
            if self._closed:
                return
            self._pending = True
            try:
                os.write(self._w, b"!")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def drain(self) -> None:
        """Read the wake-ups; a wake() from now on writes again (any earlier one is
        covered by the work the sleeper looks at next)."""
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        self._pending = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._r)
            os.close(self._w)
