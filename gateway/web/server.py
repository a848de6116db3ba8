"""The gateway's HTTP listener: the status page, `/api/status` and `/metrics`.

Built on `http.server` (no framework), with what a small always-on daemon needs
and `http.server`'s own servers lack:

- one thread per connection, each named and counted, at most `max_connections`
  at once; a connection beyond that is answered 503 at once and closed, so a
  crowd of idle or slow clients can never stop a scrape;
- a socket timeout on every connection (`timeout`), so an idle or slow client
  gives its slot back;
- an accept loop that blocks in `select()` on the listening socket and a
  wake-up pipe: no polling while idle, and `stop()` returns at once.

Handlers only read what the pipeline already keeps (under its locks, briefly)
or what `StatusRecorder` recorded: a request can never block a reader, the
spooler or the publisher. Read-only: no request changes anything.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from gateway.libc import name_native_thread
from gateway.wakepipe import WakePipe

log = logging.getLogger("gateway.web")

#: Files of the page, served from the package (no build step, nothing fetched elsewhere).
STATIC = {
    "/status.html": ("status.html", "text/html; charset=utf-8"),
    "/status.js": ("status.js", "text/javascript; charset=utf-8"),
    "/status.css": ("status.css", "text/css; charset=utf-8"),
}

Route = Callable[[], tuple[int, str, bytes]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


class HttpListener:
    """A small threaded HTTP server with bounded connections; a gateway component."""

    def __init__(self, host: str, port: int, routes: dict[str, Route], *,
                 max_connections: int = 64, timeout: float = 10.0,
                 credentials: tuple[str, str] | None = None, name: str = "http") -> None:
        self.host = host
        self.port = port
        self.routes = routes
        self.max_connections = max_connections
        self.timeout = timeout
        self.name = name
        self._auth = (
            None if credentials is None
            else "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        )
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake: WakePipe | None = None
        self._slots = threading.BoundedSemaphore(max_connections)
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._conns_lock = threading.Lock()
        self._served = 0
        #: Connections refused because every slot was taken.
        self.refused = 0
        self.errors = 0  # connections that could not be served (the listener went on)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def open_connections(self) -> int:
        with self._conns_lock:
            return len(self._conns)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(min(128, self.max_connections * 2))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._wake = WakePipe()
        self._thread = threading.Thread(target=self._main, name=f"{self.name}-accept", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            return
        assert self._wake is not None
        self._wake.wake()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("%s listener did not stop within %.1f s", self.name, timeout)
        with self._conns_lock:
            conns = list(self._conns.items())
        for _, conn in conns:
            try:  # wakes a handler blocked in recv() on an idle keep-alive connection
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("%s: shutdown of a connection: %s", self.name, exc)
        deadline = time.monotonic() + timeout
        for t, _ in conns:
            t.join(max(0.0, deadline - time.monotonic()))
        self._wake.close()
        self._thread = None

    # -- accept loop --------------------------------------------------------------------
    def _main(self) -> None:
        name_native_thread(threading.current_thread().name)
        assert self._sock is not None
        sock = self._sock
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ, "accept")
        assert self._wake is not None
        sel.register(self._wake, selectors.EVENT_READ, "wake")
        try:
            while True:
                try:
                    events = sel.select()
                    if any(key.data == "wake" for key, _ in events):
                        return
                    conn, addr = sock.accept()
                except OSError as exc:
                    # EMFILE and the like: logged, and the loop goes on (the client retries).
                    log.warning("%s: accept failed: %s", self.name, exc)
                    continue
                try:
                    self._dispatch(conn, addr)
                except Exception:  # e.g. no thread for it: this client fails, not the listener
                    self.errors += 1
                    log.exception("%s: serving %s failed", self.name, addr)
                    conn.close()
        except Exception:
            log.exception("%s accept loop failed; the listener is down", self.name)
        finally:
            sel.close()
            sock.close()

    def _dispatch(self, conn: socket.socket, addr: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:
                conn.settimeout(1.0)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError as exc:
                log.debug("%s: 503 to %s failed: %s", self.name, addr, exc)
            conn.close()
            return
        self._served += 1
        t = threading.Thread(target=self._serve, args=(conn, addr),
                             name=f"{self.name}-conn-{self._served}", daemon=True)
        with self._conns_lock:
            self._conns[t] = conn
        try:
            t.start()
        except RuntimeError:  # no thread to serve it: this client fails, the slot comes back
            with self._conns_lock:
                self._conns.pop(t, None)
            self._slots.release()
            raise

    def _serve(self, conn: socket.socket, addr: Any) -> None:
        try:
            conn.settimeout(self.timeout)
            _Handler(conn, addr, self)
        except Exception:
            log.exception("%s: request from %s failed", self.name, addr)
        finally:
            try:
                conn.close()
            finally:
                with self._conns_lock:
                    self._conns.pop(threading.current_thread(), None)
                self._slots.release()

    # -- requests -----------------------------------------------------------------------
    def authorised(self, header: str | None) -> bool:
        if self._auth is None:
            return True
        return header is not None and hmac.compare_digest(header.encode(), self._auth.encode())

    def respond(self, path: str) -> tuple[int, str, bytes]:
        route = self.routes.get(path)
        if route is not None:
            return route()
        static = STATIC.get(path)
        if static is not None and "/" in self.routes:
            name, ctype = static
            return 200, ctype, resources.files("gateway.web").joinpath(name).read_bytes()
        return 404, "text/plain; charset=utf-8", b"not found\n"


class _Handler(BaseHTTPRequestHandler):
    """One connection: GET/HEAD only; keep-alive until the client's idle timeout."""

    protocol_version = "HTTP/1.1"
    server_version = "edge-gateway"
    sys_version = ""
    listener: HttpListener

    def __init__(self, conn: socket.socket, addr: Any, listener: HttpListener) -> None:
        self.listener = listener
        # BaseRequestHandler handles the whole connection inside __init__.
        super().__init__(conn, addr, None)  # type: ignore[arg-type]

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        if not self.listener.authorised(self.headers.get("Authorization")):
            self._send(401, "text/plain; charset=utf-8", b"authentication required\n", head,
                       extra={"WWW-Authenticate": 'Basic realm="edge-gateway", charset="UTF-8"'})
            return
        path = urlsplit(self.path).path
        try:
            status, ctype, body = self.listener.respond(path)
        except Exception:
            log.exception("%s: %s failed", self.listener.name, path)
            status, ctype, body = 500, "text/plain; charset=utf-8", b"internal error (logged)\n"
        self._send(status, ctype, body, head)

    def _send(self, status: int, ctype: str, body: bytes, head: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.listener.name, *args)

    def log_error(self, format: str, *args: Any) -> None:
        # Timeouts of idle keep-alive clients land here: routine, not an error.
        log.debug("%s: " + format, self.listener.name, *args)


def json_response(data: Any) -> tuple[int, str, bytes]:
    return (HTTPStatus.OK, "application/json",
            json.dumps(data, separators=(",", ":"), allow_nan=False).encode())
