"""Word helpers and the Sensirion CRC-8 that guards each data word."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.drivers.errors import CrcError, DriverError


def s16(value: int) -> int:
    """Two's complement of a 16-bit value."""
    return value - 0x10000 if value & 0x8000 else value


def u16_le(lsb: int, msb: int) -> int:
    return lsb | (msb << 8)


def u16_be(msb: int, lsb: int) -> int:
    return (msb << 8) | lsb


def crc8_sensirion(data: bytes | Sequence[int]) -> int:
    """CRC-8, polynomial 0x31 (x^8 + x^5 + x^4 + 1), init 0xFF, no reflection, no final XOR.

    Used by Sensirion (SHT3x §4.12, SHT4x §4.4, SCD4x §3.11) and by the Aosong AHT20
    (§5.4) over each data word. Check value: CRC(0xBEEF) = 0x92 (SHT3x Table 19).
    """
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def check_words(data: bytes | Sequence[int], what: str) -> list[int]:
    """Split a Sensirion reply (MSB, LSB, CRC)* into 16-bit words, checking every CRC."""
    raw = bytes(data)
    if len(raw) % 3:
        raise DriverError(f"{what}: reply of {len(raw)} bytes is not a whole number of words")
    words: list[int] = []
    for i in range(0, len(raw), 3):
        msb, lsb, crc = raw[i], raw[i + 1], raw[i + 2]
        expected = crc8_sensirion(raw[i : i + 2])
        if crc != expected:
            raise CrcError(
                f"{what}: word {i // 3} (0x{msb:02x}{lsb:02x}) has CRC 0x{crc:02x}, "
                f"expected 0x{expected:02x}"
            )
        words.append(u16_be(msb, lsb))
    return words


def crc8_maxim(data: bytes | Sequence[int]) -> int:
    """Dallas/Maxim 1-Wire CRC-8: the same polynomial as Sensirion's, reflected, initial 0.

    Maxim Application Note 27, "Understanding and Using Cyclic Redundancy Checks with
    Maxim 1-Wire and iButton Products": the ROM `02 1C B8 01 00 00 00` has CRC `A2`.
    """
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C  # the polynomial, bit-reversed
            byte >>= 1
    return crc
