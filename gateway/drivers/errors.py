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
    """
