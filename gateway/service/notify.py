"""A small sd_notify(3) client over the NOTIFY_SOCKET unix datagram socket.

systemd passes the socket path in `NOTIFY_SOCKET` (a leading `@` means the
Linux abstract namespace) and, when `WatchdogSec=` is set, the period in
`WATCHDOG_USEC` (and `WATCHDOG_PID`, the process it is meant for). Without
`NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same outside
systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("gateway.service")

_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace (sd_notify(3))
    if value.startswith("/"):
        return value
    return None  # vsock: addresses (systemd 254+) are not used on a Pi


class Notifier:
    """Sends state lines to the service manager. Safe to call from any thread."""

    def __init__(self, socket_path: str | None, watchdog_usec: int | None = None) -> None:
        self.path = socket_path
        self.watchdog_usec = watchdog_usec
        self.sent = 0
        self.errors = 0
        self._last_error: str | None = None
        self._address = _address(socket_path) if socket_path else None
        if socket_path and self._address is None:
            log.warning("NOTIFY_SOCKET=%s is not a unix socket path; not notifying", socket_path)

    @classmethod
    def from_environ(cls, unset: bool = True) -> Notifier:
        """Read NOTIFY_SOCKET / WATCHDOG_USEC; `unset` hides them from child processes
        (the inference worker must not talk to systemd in our name)."""
        env = os.environ
        path = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if raw:
            try:
                usec = int(raw)
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r (not a number)", raw)
            if pid and pid != str(os.getpid()):
                usec = None  # the watchdog is meant for another process
            if usec is not None and usec <= 0:
                usec = None
        if unset:
            for key in _ENV:
                env.pop(key, None)
        return cls(path, usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_period(self) -> float | None:
        """The watchdog timeout in seconds (None: no watchdog)."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 1e6

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` lines in one datagram. False if not sent."""
        if self._address is None or not fields:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(data, self._address)
        except OSError as exc:
            self.errors += 1
            text = f"{type(exc).__name__}: {exc}"
            if text != self._last_error:
                log.warning("cannot notify systemd on %s: %s", self.path, text)
                self._last_error = text
            return False
        if self._last_error is not None:
            log.info("notifying systemd works again")
            self._last_error = None
        self.sent += 1
        return True

    # -- the messages the daemon sends (sd_notify(3)) --------------------------------
    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        # MONOTONIC_USEC lets systemd tell this reload from an earlier one
        # (required with Type=notify-reload, harmless with Type=notify).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.send(*_status(text))

    def watchdog(self, status: str | None = None) -> bool:
        return self.send("WATCHDOG=1", *_status(status))


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return ("STATUS=" + " ".join(text.split()),)  # one line


_default: Notifier | None = None


def default_notifier() -> Notifier:
    """The process-wide notifier (reads and hides the environment on first use)."""
    global _default
    if _default is None:
        _default = Notifier.from_environ()
    return _default


def set_default_notifier(notifier: Notifier | None) -> None:
    """Install a notifier (the run command, tests); None: read the environment again."""
    global _default
    _default = notifier
