"""Modbus register maps: raw 16-bit registers <-> named physical values.

Modbus Application Protocol v1.1b3 §4.2: a register is 16 bits, sent big-endian
(high byte first). 32-bit values span two registers; which comes first is not
standardised, so `word_order` says it: "big" (high word at the lower address,
"ABCD") or "little" (low word first, "CDAB").

The RTU transport itself (framing, CRC, retries) is pymodbus'. The CRC here is
for the simulator's slave and for counting corrupted replies.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
WordOrder = Literal["big", "little"]

REGISTERS: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
#: Function 03/04 read at most 125 registers per request (spec §6.3, §6.4).
MAX_READ = 125


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (Modbus over Serial Line v1.02 §6.2.2): poly 0xA001 reflected, init 0xFFFF.

    Sent low byte first.
    """
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + crc16(frame).to_bytes(2, "little")


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


@dataclass(frozen=True)
class RegisterSpec:
    address: int
    name: str
    type: DataType = "uint16"
    word_order: WordOrder = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    @property
    def count(self) -> int:
        return REGISTERS[self.type]

    @property
    def key(self) -> str:
        return self.name if not self.unit else f"{self.name}_{self.unit}"


def _words_to_bytes(words: Sequence[int], word_order: WordOrder) -> bytes:
    ordered = list(words) if word_order == "big" else list(reversed(words))
    return b"".join(w.to_bytes(2, "big") for w in ordered)


def decode_value(words: Sequence[int], dtype: DataType, word_order: WordOrder = "big") -> float | int:
    """Raw registers (as read, lowest address first) -> the number they hold."""
    if len(words) != REGISTERS[dtype]:
        raise ValueError(f"{dtype} needs {REGISTERS[dtype]} registers, got {len(words)}")
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"register value out of range: {w}")
    raw = _words_to_bytes(words, word_order)
    fmt = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}[dtype]
    value: float | int = struct.unpack(fmt, raw)[0]
    return value


def encode_value(value: float | int, dtype: DataType, word_order: WordOrder = "big") -> list[int]:
    """The inverse of decode_value (used by the simulator's slave)."""
    fmt = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}[dtype]
    raw = struct.pack(fmt, value if dtype == "float32" else int(value))
    words = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    return words if word_order == "big" else list(reversed(words))


def physical(spec: RegisterSpec, words: Sequence[int]) -> float | int:
    """Decoded value * scale + offset; raises ValueError for NaN/inf (not publishable)."""
    v = decode_value(words, spec.type, spec.word_order)
    if spec.scale == 1.0 and spec.offset == 0.0 and spec.type != "float32":
        return v
    out = v * spec.scale + spec.offset
    if not math.isfinite(out):
        raise ValueError(f"{spec.name}: not a finite number")
    return out


@dataclass(frozen=True)
class Block:
    """One read request: `count` registers from `address`."""

    address: int
    count: int


def plan_blocks(specs: Iterable[RegisterSpec], max_gap: int = 0) -> list[Block]:
    """Group adjacent registers into as few reads as possible.

    Gaps are not bridged by default (max_gap=0): many slaves answer "illegal data
    address" for unmapped registers inside a range.
    """
    ordered = sorted(specs, key=lambda s: s.address)
    blocks: list[Block] = []
    start = end = -1
    for s in ordered:
        s_end = s.address + s.count
        if start >= 0 and s.address - end <= max_gap and max(end, s_end) - start <= MAX_READ:
            end = max(end, s_end)
            continue
        if start >= 0:
            blocks.append(Block(start, end - start))
        start, end = s.address, s_end
    if start >= 0:
        blocks.append(Block(start, end - start))
    return blocks


def decode_map(specs: Iterable[RegisterSpec], registers: dict[int, int]) -> dict[str, float | int]:
    """Named values from a {address: word} table holding every mapped register."""
    out: dict[str, float | int] = {}
    for s in specs:
        words = [registers[a] for a in range(s.address, s.address + s.count)]
        out[s.key] = physical(s, words)
    return out
