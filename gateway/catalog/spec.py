"""What a catalog entry declares: `DeviceSpec` (and the scan probe of a chip).

Data and pure factories only: a spec names the config model of its `driver:`
value and how to build the pure driver (I2C) or decoder (line-oriented serial)
from that config. Which thread runs the device is the readers' business
(`gateway.readers.factory`), so nothing here imports a reader.

The records are `NamedTuple`s: every daemon loads the catalog (why that matters:
gateway.slots).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    # Annotations only: the config package imports the catalog's registry to validate
    # `devices:`, so importing the config at run time here would close a loop.
    from gateway.config.model import DeviceBase


class I2CBus(Protocol):
    """What a driver talks to: the `smbus2.SMBus` methods drivers use (DESIGN.md, Driver API).

    `smbus2.SMBus` and the simulator's `SimBus` both fit (positional arguments only:
    implementations name them as they like and may take smbus2's `force` too).
    """

    def read_byte_data(self, i2c_addr: int, register: int, /) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int, /) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, /) -> list[int]: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int], /) -> None: ...

    def i2c_rdwr(self, *i2c_msgs: Any) -> None: ...


#: How a driver waits (time.sleep, or a simulated clock's sleep in tests).
Sleep = Callable[[float], None]


class I2CDriver(Protocol):
    """What every I2C driver offers (see DESIGN.md, Driver API)."""

    def read(self) -> dict[str, float]: ...


#: Bytes of one line in, the records it holds out (none for a line that is not a record).
Decode = Callable[[bytes], list[dict[str, Any]]]


class Framer(Protocol):
    """Splits a serial byte stream into records (`gateway.protocols.framer`)."""

    counters: dict[str, int]

    def feed(self, data: bytes) -> list[bytes]: ...
    def resync(self) -> None: ...
    def synced(self) -> None: ...
    @property
    def buffered(self) -> int: ...


class LineStream(NamedTuple):
    """How a line-oriented serial device (read by `StreamReader`) is framed and decoded."""

    decode: Decode
    #: Publish at most this often (None: every record).
    interval: float | None
    #: Longest line kept; longer ones are dropped and counted.
    max_line: int
    #: No valid record for this long marks the device failing.
    silence_timeout: float
    #: How records are cut from the bytes (None: newline-framed lines up to max_line).
    framer: Framer | None = None


class ChipProbe(NamedTuple):
    """How `edge-gateway scan` recognises a chip."""

    addresses: tuple[int, ...]
    #: Register holding an id, the values it may hold, and how to read it
    #: ("byte": read_byte_data; "word_be": 16-bit big-endian block read).
    id_register: int | None = None
    id_values: frozenset[int] = frozenset()
    id_format: Literal["byte", "word_be"] = "byte"


class SysfsEnv(NamedTuple):
    """What the poll of a kernel-driven device gets from the readers layer."""

    #: `/` on a Pi, the simulator's tree in simulate mode.
    root: Path
    #: How to read a sysfs file (the simulator's adds the faults a flaky driver has).
    read_text: Callable[[Path], str]
    #: The device's health counters (what a poll retried or skipped).
    counters: dict[str, int]
    #: The spool's directory: where a device may keep a small state (a pulse total).
    state_dir: Path | None


class KernelPoll(NamedTuple):
    """A device the kernel drives, read from sysfs in a polled thread of its own."""

    #: From the device's config and its environment, the function that takes one reading.
    make: Callable[[Any, SysfsEnv], Callable[[], dict[str, Any]]]
    #: errno values that are routine for the kernel driver: retried within the poll.
    routine: frozenset[int] = frozenset()
    #: How many such retries, and how long apart, given the config.
    retries: Callable[[Any], int] = lambda cfg: 0
    retry_delay: Callable[[Any], float] = lambda cfg: 2.0


class DeviceSpec(NamedTuple):
    driver: str
    summary: str
    kind: Literal["i2c", "serial", "virtual", "kernel"]
    config: type[DeviceBase]
    quantities: tuple[str, ...]
    #: i2c: build the pure driver from an SMBus-like bus and the device's config.
    #: (The config is each entry's own model, hence Any: a callable taking the narrower
    #: model is not one taking any device config.)
    make_driver: Callable[[I2CBus, Any], I2CDriver] | None = None
    #: Line-oriented serial: the framing and decoder for the device's config and its
    #: health counters (the decoder counts what it rejects there).
    make_stream: Callable[[Any, dict[str, int]], LineStream] | None = None
    probe: ChipProbe | None = None
    #: Datasheet or standard the driver follows.
    reference: str = ""
    #: Who makes the chip, and its name (the device as Home Assistant lists it).
    manufacturer: str | None = None
    model: str | None = None
    #: The keys a device publishes given its config (default: all of `quantities`).
    publishes: Callable[[Any], tuple[str, ...]] | None = None
    #: User-defined keys (`lines` fields, Modbus registers) with their unit and type.
    user_fields: Callable[[Any], tuple[UserField, ...]] | None = None
    #: Smallest step of each quantity given the config (sets the decimals HA shows).
    resolution: Callable[[Any], dict[str, float]] | None = None
    #: kernel: a sysfs device polled in its own thread ...
    kernel_poll: KernelPoll | None = None
    #: ... or a GPIO input line read by its edge events.
    gpio_input: Literal["contact", "counter"] | None = None


class UserField(NamedTuple):
    """A key the user defined in the config, as discovery needs it."""

    name: str
    unit: str | None
    numeric: bool = True
    #: Configured `device_class`: None derives it from the unit, "none" turns it off.
    device_class: str | None = None
    #: Step of the published value where the config implies one (a register's scale).
    resolution: float | None = None

    @property
    def key(self) -> str:
        return f"{self.name}_{self.unit}" if self.unit else self.name
