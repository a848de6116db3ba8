"""Split a byte stream into lines, with a cap so noise cannot grow memory.

A serial line can deliver binary noise or a device that never sends its
delimiter. The framer keeps at most `max_line` bytes of an unfinished line;
beyond that the partial line is dropped (counted in `overlong`) and bytes are
discarded up to the next delimiter, so decoding resumes at the next complete
line.
"""

from __future__ import annotations


class LineFramer:
    def __init__(self, delimiter: bytes = b"\n", max_line: int = 1024) -> None:
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.delimiter = delimiter
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False
        #: Lines longer than max_line that were dropped.
        self.overlong = 0

    def resync(self) -> None:
        """Forget any partial line and skip to the next delimiter (after a reopen)."""
        self._buf.clear()
        self._discarding = True

    def synced(self) -> None:
        """The next byte starts a line (e.g. a device's reply to a command just written)."""
        self._discarding = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete lines (delimiter and trailing CR removed)."""
        out: list[bytes] = []
        delim = self.delimiter
        start = 0
        n = len(data)
        while start < n:
            end = data.find(delim, start)
            if end < 0:
                if not self._discarding:
                    self._buf += data[start:]
                    if len(self._buf) > self.max_line:
                        self._buf.clear()
                        self._discarding = True
                        self.overlong += 1
                return out
            if self._discarding:
                self._discarding = False
            else:
                self._buf += data[start:end]
                if len(self._buf) > self.max_line:
                    self.overlong += 1
                else:
                    line = bytes(self._buf)
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    out.append(line)
            self._buf.clear()
            start = end + len(delim)
        return out
