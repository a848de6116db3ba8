"""Split a byte stream into records, with a cap so noise cannot grow memory.

Two framers, one interface (`feed`, `resync`, `buffered`, `counters`):

- `LineFramer`: records end at a delimiter (microcontroller lines). It keeps at
  most `max_line` bytes of an unfinished line; beyond that the partial line is
  dropped (counted in `overlong_lines`) and bytes are discarded up to the next
  delimiter. The first line after a (re)open may be the tail of a line the
  device was sending: it is kept only when `whole_first_line` vouches for it.
- `SentenceFramer`: NMEA 0183 sentences, which *start* with `$` or `!` (§5.3).
  Decoding resynchronises on the next start character, not only on the next
  newline, so binary bytes before a sentence, a sentence cut short by the next
  one, or an overlong run of text lose nothing around them. u-blox UBX frames
  on the same port (`B5 62 class id len16le payload ck_a ck_b`, u-blox
  interface description §3.2) are recognised by their checksum and skipped
  whole, so a `$` inside their payload never starts a false sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable


class LineFramer:
    def __init__(self, delimiter: bytes = b"\n", max_line: int = 1024,
                 whole_first_line: Callable[[bytes], bool] | None = None) -> None:
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.delimiter = delimiter
        self.max_line = max_line
        self.whole_first_line = whole_first_line
        self._buf = bytearray()
        self._discarding = False
        self._first = False
        self.counters: dict[str, int] = {}

    @property
    def overlong(self) -> int:
        """Lines longer than max_line that were dropped."""
        return self.counters.get("overlong_lines", 0)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def resync(self) -> None:
        """Forget any partial line (after a reopen); the next line may be a tail."""
        self._buf.clear()
        self._discarding = False
        self._first = True

    def synced(self) -> None:
        """The next byte starts a line (e.g. a device's reply to a command just written)."""
        self._discarding = False
        self._first = False

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
                        self._first = False
                        self._count("overlong_lines")
                return out
            if self._discarding:
                self._discarding = False
            else:
                self._buf += data[start:end]
                if len(self._buf) > self.max_line:
                    self._count("overlong_lines")
                else:
                    line = bytes(self._buf)
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    if self._first and not (self.whole_first_line and self.whole_first_line(line)):
                        self._count("partial_first_lines")
                    else:
                        out.append(line)
                self._first = False
            self._buf.clear()
            start = end + len(delim)
        return out


#: Where a sentence can start: `$` (parametric) or `!` (encapsulated), or a UBX sync char.
_HUNT = re.compile(rb"[$!\xb5]")
#: What ends a sentence candidate: anything but printable ASCII, or a new start.
_STOP = re.compile(rb"[^\x20\x22\x23\x25-\x7e]")
_COMPLETE = re.compile(rb"\*[0-9A-Fa-f]{2}$")
UBX_SYNC = b"\xb5\x62"
#: Longest UBX payload waited for (NAV-SAT / RXM-RAWX with many satellites stay below).
UBX_MAX_PAYLOAD = 8192


def ubx_checksum(frame_body: bytes | bytearray) -> bytes:
    """8-bit Fletcher over class, id, length and payload (u-blox: "UBX checksum")."""
    a = b = 0
    for byte in frame_body:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


def _junk(buf: bytearray, i: int, j: int) -> int:
    """Bytes in buf[i:j] that are not line ends (which separate sentences)."""
    seg = buf[i:j]
    return len(seg) - seg.count(b"\n") - seg.count(b"\r")


class SentenceFramer:
    def __init__(self, max_line: int = 256) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.max_line = max_line
        self._buf = bytearray()
        #: Offset of the sentence being collected in _buf, or None while hunting for one.
        self._start: int | None = None
        self.counters: dict[str, int] = {}

    @property
    def overlong(self) -> int:
        return self.counters.get("overlong_lines", 0)

    def _count(self, key: str, n: int = 1) -> None:
        if n:
            self.counters[key] = self.counters.get(key, 0) + n

    def resync(self) -> None:
        """Forget any partial input (after a reopen). A sentence always starts at `$`,
        so a tail received first is skipped by itself, and a whole sentence is kept."""
        self._buf.clear()
        self._start = None

    def synced(self) -> None:
        """Nothing to do: a sentence is recognised by its `$` wherever it starts."""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the sentence candidates (from `$`/`!`, CR/LF removed)."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        i, n = 0, len(buf)
        skipped = 0
        while i < n:
            if self._start is None:
                m = _HUNT.search(buf, i)
                j = n if m is None else m.start()
                skipped += _junk(buf, i, j)
                i = j
                if m is None:
                    break
                if buf[i] == 0xB5:
                    used = self._ubx(buf, i, n)
                    if used is None:
                        break  # a frame may be arriving: wait for the rest
                    if used == 1:
                        skipped += 1
                    i += used
                    continue
                self._start = i
            start = self._start
            stop = _STOP.search(buf, start + 1)
            if stop is None:
                if n - start > self.max_line:
                    # Overlong: drop it and hunt for the next start (not the next newline).
                    self._count("overlong_lines")
                    self._start = None
                    i = n
                    continue
                i = n
                break
            k = stop.start()
            candidate = bytes(buf[start:k])
            self._start = None
            if len(candidate) > self.max_line:
                self._count("overlong_lines")
            elif buf[k] in b"\r\n" or _COMPLETE.search(candidate):
                out.append(candidate)  # ended by CR/LF, or complete up to its checksum
            else:
                self._count("truncated_sentences")  # cut short by binary or a new start
            i = k + 1 if buf[k] in b"\r\n" else k
        self._count("skipped_bytes", skipped)
        keep = self._start if self._start is not None else i
        del buf[:keep]
        if self._start is not None:
            self._start = 0
        return out

    def _ubx(self, buf: bytearray, i: int, n: int) -> int | None:
        """At a 0xB5: bytes to skip (a whole valid UBX frame, or 1), None to wait."""
        if n - i < 2:
            return None
        if buf[i + 1] != 0x62:
            return 1
        if n - i < 6:
            return None
        length = int.from_bytes(buf[i + 4:i + 6], "little")
        if length > UBX_MAX_PAYLOAD:
            return 1
        total = 8 + length
        if n - i < total:
            return None
        if ubx_checksum(buf[i + 2:i + 6 + length]) != buf[i + 6 + length:i + total]:
            return 1  # B5 62 by chance in noise: rescan from the next byte
        self._count("binary_frames")
        return total
