"""The Sensirion CRC-8 and reply words, written from the datasheets' definition.

SHT3x §4.12 Table 19, SHT4x §4.4, SCD4x §3.11 all specify the same CRC: polynomial
0x31 (x^8 + x^5 + x^4 + 1), init 0xFF, no reflection, no final XOR. The tests check the
drivers and the chip models against this bit-by-bit version, never against their own.
"""

from __future__ import annotations


def crc_by_definition(data: bytes) -> int:
    reg = 0xFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = ((reg >> 7) & 1) ^ ((byte >> bit) & 1)
            reg = ((reg << 1) & 0xFF) ^ (0x31 if top else 0)
    return reg


def words(*ws: int) -> bytes:
    """16-bit words as a Sensirion chip sends them: MSB, LSB, CRC of the two."""
    return b"".join(w.to_bytes(2, "big") + bytes([crc_by_definition(w.to_bytes(2, "big"))])
                    for w in ws)
