"""A socket wrapper that gives paho-mqtt one syscall per batch instead of several per packet.

paho reads every incoming packet with three `recv()` calls (command byte, each
length byte, body) and writes every outgoing packet with its own `send()`. At
thousands of PUBACKs a second that is tens of thousands of syscalls, and in a
multi-threaded CPython process each one releases and re-takes the GIL, so the
publisher queues behind the sensor and spool threads on every one of them.

`BufferedSocket` keeps what one `recv(64 KiB)` returned and hands it out
packet-piece by packet-piece, and collects what paho sends until the publisher
calls `flush()` once per round. paho's own websocket support wraps its socket
the same way (`_WebsocketWrapper`); this one implements the same `SocketLike`
protocol (recv, send, close, fileno, setblocking, pending).

Only the publisher thread touches it, like the paho client it belongs to.
"""

from __future__ import annotations

import logging
import select
import ssl
import time
from typing import Any

log = logging.getLogger("gateway.mqtt")

READ_CHUNK = 65536
# Past this much unsent output, send() refuses (BlockingIOError) until the kernel takes
# some: paho keeps the packet queued and asks to be told when the socket is writable.
WRITE_HIGH_WATER = 256 * 1024
CLOSE_FLUSH_TIMEOUT = 1.0


class BufferedSocket:
    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()

    # -- paho's SocketLike -------------------------------------------------------------
    def recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = self._sock.recv(READ_CHUNK)  # BlockingIOError / SSLWantReadError pass up
            if not data:
                return b""  # the broker closed the connection
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        end = min(start + bufsize, len(self._rbuf))
        self._rpos = end
        return self._rbuf[start:end]

    def send(self, data: bytes | bytearray) -> int:
        if len(self._wbuf) >= WRITE_HIGH_WATER:
            self.flush()
            if len(self._wbuf) >= WRITE_HIGH_WATER:
                raise BlockingIOError("output buffer full; waiting for the socket")
        self._wbuf += data
        return len(data)

    def close(self) -> None:
        """Send what is still buffered (e.g. paho's DISCONNECT, bounded), then close."""
        try:
            if self._wbuf:
                self._flush_blocking(CLOSE_FLUSH_TIMEOUT)
        except OSError as exc:
            log.debug("unsent bytes at close: %d (%s)", len(self._wbuf), exc)
        finally:
            self._wbuf.clear()
            self._sock.close()

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def pending(self) -> int:
        """Bytes readable without touching the socket (paho's loop checks this for TLS)."""
        inner = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return len(self._rbuf) - self._rpos + inner

    # -- for the publisher's loop ------------------------------------------------------
    @property
    def buffered_output(self) -> int:
        return len(self._wbuf)

    def flush(self) -> None:
        """Hand buffered output to the kernel; what it does not take yet stays buffered.

        Raises OSError when the connection is broken (paho's next read notices too).
        """
        while self._wbuf:
            try:
                n = self._sock.send(self._wbuf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            if n <= 0:
                return
            del self._wbuf[:n]

    def _flush_blocking(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._wbuf:
            self.flush()
            left = deadline - time.monotonic()
            if not self._wbuf or left <= 0:
                return
            select.select([], [self._sock], [], left)
