"""Modbus register maps: raw 16-bit registers <-> named physical values.

Modbus Application Protocol v1.1b3 §4.2: a register is 16 bits, sent big-endian
(high byte first). 32-bit values span two registers; which comes first is not
standardised, so `word_order` says it: "big" (high word at the lower address,
"ABCD") or "little" (low word first, "CDAB").

The RTU transport itself (framing, CRC, retries) is pymodbus'. The CRC here is
for the simulator's slave and for counting corrupted replies.

Published values: a float32 is the shortest decimal that reads back as the
same float32 (230.1, not 230.10000610351562: IEEE 754 single precision holds
6-9 significant decimal digits, and this keeps exactly what the slave sent).
Scale and offset are applied to that, and the binary noise of the
multiplication is dropped (15 significant digits). `decimals` rounds further.
A float32 that is NaN or infinite is ABSENT: that value is left out and listed,
the slave's other registers publish.

The catalog entry follows the protocol:
`driver: modbus_rtu` — one Modbus RTU slave (RS-485 meter, PLC) polled with pymodbus.

Several slaves on one RS-485 line are several devices with the same `port`
(`shares_port`): each has its own topic, schedule and health, and they share
one pymodbus client and one lock, so requests never interleave on the wire.
The decoder above takes plain arguments; only the entry reads the config.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from gateway.catalog.spec import DeviceSpec, UserField
from gateway.config.model import Section, SerialDevice
from gateway.config.schema import Field, model_validator
from gateway.config.types import FieldDeviceClass
from gateway.quantities import check_device_class
from gateway.reading import ABSENT

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
    #: Round the published value to this many decimal places (None: see the module doc).
    decimals: int | None = None

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


def float32_shortest(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (what numpy prints)."""
    if not math.isfinite(value):
        return value
    packed = struct.pack(">f", value)
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.pack(">f", candidate) == packed:
                return candidate
        except OverflowError:
            continue
    return value


def physical(spec: RegisterSpec, words: Sequence[int]) -> Any:
    """Decoded value * scale + offset, rounded as the module doc says; ABSENT for NaN/inf."""
    v = decode_value(words, spec.type, spec.word_order)
    if spec.type == "float32":
        v = float32_shortest(v)
    out = v
    if spec.scale != 1.0 or spec.offset != 0.0:
        out = v * spec.scale + spec.offset
        if math.isfinite(out):
            out = float(f"{out:.15g}")  # 2314 * 0.1 is 231.4, not 231.40000000000003
    if not math.isfinite(out):
        return ABSENT
    if spec.decimals is not None:
        out = round(out, spec.decimals)
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


def decode_map(specs: Iterable[RegisterSpec], registers: dict[int, int]) -> dict[str, Any]:
    """Named values from a {address: word} table holding every mapped register
    (ABSENT where a float32 is NaN or infinite)."""
    out: dict[str, Any] = {}
    for s in specs:
        words = [registers[a] for a in range(s.address, s.address + s.count)]
        out[s.key] = physical(s, words)
    return out


# -- the catalog entry ------------------------------------------------------------

_REGISTERS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}


class RegisterConfig(Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64, description="Value name.")
    address: int = Field(ge=0, le=65535, description="Register address (0-based, as on the wire).")
    type: Literal["int16", "uint16", "int32", "uint32", "float32"] = Field(
        default="uint16", description="Data type; 32-bit types span two registers."
    )
    count: int | None = Field(
        default=None, ge=1, le=2, description="Registers used (implied by type; checked if given)."
    )
    word_order: Literal["big", "little"] = Field(
        default="big", description="32-bit: big = high word first (ABCD), little = CDAB."
    )
    scale: float = Field(default=1.0, description="value = raw * scale + offset.")
    offset: float = Field(default=0.0, description="value = raw * scale + offset.")
    unit: str | None = Field(
        default=None, pattern=r"^[a-z0-9]+$", max_length=16,
        description="Unit suffix of the published key: {name: voltage, unit: v} -> voltage_v.",
    )
    device_class: FieldDeviceClass = None
    decimals: int | None = Field(
        default=None, ge=0, le=10,
        description="Round the published value to this many decimal places "
                    "(default: float32 as the shortest decimal that is the same float32).",
    )

    @model_validator(mode="after")
    def _count(self) -> RegisterConfig:
        need = _REGISTERS[self.type]
        if self.count is not None and self.count != need:
            raise ValueError(f"{self.type} uses {need} register(s), not {self.count}")
        if self.address + need - 1 > 65535:
            raise ValueError("register range runs past address 65535")
        if self.device_class not in (None, "none"):
            check_device_class(self.device_class, self.unit)
        return self

    @property
    def key(self) -> str:
        return self.name if not self.unit else f"{self.name}_{self.unit}"


class ModbusRtuConfig(SerialDevice):
    driver: Literal["modbus_rtu"]
    #: Devices on one RS-485 line share the port (and one client + lock).
    shares_port: ClassVar[bool] = True
    slave: int = Field(default=1, ge=1, le=247, description="Slave (unit) address 1..247.")
    function: Literal["holding", "input"] = Field(
        default="holding", description="holding (function 03) or input (04) registers."
    )
    registers: list[RegisterConfig] = Field(min_length=1, description="The register map.")
    retries: int = Field(default=2, ge=0, le=10, description="Retries per request (pymodbus).")

    @model_validator(mode="after")
    def _unique(self) -> ModbusRtuConfig:
        keys = [r.key for r in self.registers]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"registers publish the same key twice: {', '.join(dup)}")
        return self


def register_specs(cfg: ModbusRtuConfig) -> list[RegisterSpec]:
    return [RegisterSpec(r.address, r.name, r.type, r.word_order, r.scale, r.offset, r.unit,
                         r.decimals)
            for r in cfg.registers]


def _user_fields(cfg: ModbusRtuConfig) -> tuple[UserField, ...]:
    # Integer registers step by `scale`; a float32 has no fixed step unless rounded.
    return tuple(
        UserField(r.name, r.unit, True, r.device_class,
                  10.0 ** -r.decimals if r.decimals is not None
                  else None if r.type == "float32" or r.scale == 0 else abs(r.scale))
        for r in cfg.registers)


SPEC = DeviceSpec(
    driver="modbus_rtu",
    summary="Modbus RTU slave over RS-485 (register map in config)",
    kind="serial",
    config=ModbusRtuConfig,
    quantities=(),  # user-defined
    user_fields=_user_fields,
    reference="Modbus Application Protocol v1.1b3; Modbus over Serial Line v1.02",
)
