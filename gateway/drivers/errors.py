"""What a driver raises when a chip answers with something a working chip cannot say."""

from __future__ import annotations


class DriverError(Exception):
    """A chip answered, but with something a working chip cannot say."""


class WrongChipError(DriverError):
    """The id register names another chip than the driver expects."""


class CrcError(DriverError):
    """A data word failed its CRC check."""


class ConversionTimeout(DriverError):
    """The chip did not finish a conversion in the time its datasheet allows."""


class NoNewData(Exception):
    """The chip measures on its own schedule and has nothing new since the last read.

    Not a fault: the reader skips this poll and asks again at the next slot, instead
    of holding the bus while the chip finishes (the SCD4x measures every 5 s).
    `retry_in`, when the driver knows it: the seconds until something new is due; the
    reader asks then if that comes before the next slot, so the first reading after a
    start is not a whole interval late.
    """

    def __init__(self, message: str, retry_in: float | None = None) -> None:
        super().__init__(message)
        self.retry_in = retry_in
