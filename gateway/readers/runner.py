"""`DeviceRunner`: what the daemon and the watchdog know of a running device.

A device is run by a thread of its own (a serial reader), or scheduled on a
thread it shares (I2C chips on their bus's thread). Either way the daemon
starts, stops and joins it, and the watchdog reads its heartbeat against its
stall allowance, through this one interface and nothing else.
"""

from __future__ import annotations

from typing import Protocol


class DeviceRunner(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None:
        """Ask it to stop; returns at once (`join` waits)."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` for it to stop; True once stopped."""

    @property
    def alive(self) -> bool:
        """Running (or scheduled) and not dead from a bug."""

    @property
    def heartbeat(self) -> float:
        """time.monotonic() of its last sign of progress."""

    @property
    def stall_allowance(self) -> float:
        """How long it may rightly go without a beat: its interval, backoff cap or I/O timeout."""
