"""Sensirion SCD4x (SCD40 / SCD41) photoacoustic CO2 sensor, with temperature and humidity.

Reference: Sensirion "Datasheet SCD4x" (v1.3, September 2022). Fixed I2C
address 0x62. Command overview §3.4 Table 9 (hex code, execution time, and
whether the command is accepted while a periodic measurement runs); basic
commands §3.5 (start_periodic_measurement 0x21B1: a new measurement every
5 s; read_measurement 0xEC05, 1 ms; stop_periodic_measurement 0x3F86, 500 ms
before the chip answers again); low power §3.8 (start_low_power_periodic_
measurement 0x21AC: about every 30 s; get_data_ready_status 0xE4B8, 1 ms:
ready when the least significant 11 bits are not 0); get_serial_number 0x3682
§3.9.2 (three words, idle only); reinit 0x3646 §3.9.5 (20 ms, idle only);
measure_single_shot 0x219D §3.10.1 (SCD41 only, 5000 ms). Commands are 16 bits,
MSB first; every reply word is MSB, LSB, CRC-8 (§3.11: poly 0x31, init 0xFF).

Conversion, read_measurement §3.5.2:
    CO2 [ppm] = word[0];  T [°C] = -45 + 175 · word[1] / 2^16;  RH [%] = 100 · word[2] / 2^16
(v1.3 divides by 2^16; Sensirion's newer generated drivers use 2^16 - 1, a difference
below 0.003 °C and 0.002 %RH; §3.5.2 itself was quoted, not read, when this was written.)
The example response there, 0x01F4 0x33, 0x6667 0xA2, 0x5EB9 0x3C, is 500 ppm,
25 °C, 37 %RH.

The chip measures on its own schedule (periodic mode); `read()` takes the
newest measurement, all three quantities from one read_measurement. If none is
new yet it raises `NoNewData` at once, saying when the next is due, and the
reader asks again then or at its next slot, whichever comes first: waiting here
would hold the bus, and every other chip on it, for up to a period. Only when
nothing new has come for `STALE_AFTER_PERIODS` periods has the chip stopped
measuring, and that is a `ConversionTimeout`.

The catalog entry follows the driver:
`driver: scd4x` — Sensirion SCD40/SCD41 CO2 sensor (with temperature and humidity).

The chip measures on its own schedule: every 5 s in `periodic` mode, about
every 30 s in `low_power` mode. Polling faster than that would find nothing
new at most polls, so an `interval` shorter than the mode's period is a config
error.
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus, Sleep
from gateway.config.model import I2CDevice
from gateway.config.schema import Field, model_validator
from gateway.config.types import I2CAddress
from gateway.drivers import ConversionTimeout, NoNewData, check_words, read_bytes, write_bytes

DEFAULT_ADDRESS = 0x62  # the only address of the SCD4x

# Command codes, named as in the datasheet (§3.4 Table 9).
START_PERIODIC_MEASUREMENT = 0x21B1  # §3.5.1, idle only
READ_MEASUREMENT = 0xEC05  # §3.5.2, 1 ms, also during measurement
STOP_PERIODIC_MEASUREMENT = 0x3F86  # §3.5.3, 500 ms, also during measurement
START_LOW_POWER_PERIODIC_MEASUREMENT = 0x21AC  # §3.8.1, idle only
GET_DATA_READY_STATUS = 0xE4B8  # §3.8.2, 1 ms, also during measurement
GET_SERIAL_NUMBER = 0x3682  # §3.9.2, 1 ms, idle only
REINIT = 0x3646  # §3.9.5, 20 ms, idle only
MEASURE_SINGLE_SHOT = 0x219D  # §3.10.1, 5000 ms, SCD41 only

#: Execution times in seconds (§3.4 Table 9): wait this long before the next transaction.
READ_TIME_S = 0.001  # read_measurement, get_data_ready_status, get_serial_number
STOP_TIME_S = 0.5  # stop_periodic_measurement

DATA_READY_MASK = 0x07FF  # §3.8.2: the least significant 11 bits; 0 = no new data

Mode = Literal["periodic", "low_power"]
#: Periodic mode -> its start command and signal update interval in seconds (§3.5.1, §3.8.1).
START_COMMAND: dict[str, int] = {
    "periodic": START_PERIODIC_MEASUREMENT,
    "low_power": START_LOW_POWER_PERIODIC_MEASUREMENT,
}
SIGNAL_UPDATE_INTERVAL_S: dict[str, float] = {"periodic": 5.0, "low_power": 30.0}

#: Nothing new for this many periods after the last measurement (or the start): the
#: chip has stopped measuring. Room for its clock and for a poll that came just early.
STALE_AFTER_PERIODS = 2.5
#: A poll that found nothing asks again this long after the measurement is due (the
#: chip's own clock may run a little slow).
READY_MARGIN_S = 0.1


def convert(co2: int, s_t: int, s_rh: int) -> dict[str, float]:
    """§3.5.2: the three words of read_measurement -> ppm, °C and %RH."""
    return {
        "co2_ppm": float(co2),
        "temperature_c": round(-45.0 + 175.0 * s_t / 65536.0, 3),
        "humidity_pct": round(100.0 * s_rh / 65536.0, 3),
    }


class SCD4x:
    """SCD4x in periodic (or low-power periodic) measurement mode."""

    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *, mode: Mode = "periodic",
                 sleep: Sleep = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in START_COMMAND:
            raise ValueError(f"mode must be periodic or low_power, not {mode!r}")
        self.bus = bus
        self.address = address
        self.mode = mode
        self.period = SIGNAL_UPDATE_INTERVAL_S[mode]
        self._sleep = sleep
        self._clock = clock
        # A previous process may have left the chip measuring, and then it accepts
        # neither get_serial_number nor a start command (Table 9): stop it first.
        # Stopping an idle chip is harmless.
        self.stop_periodic_measurement()
        # The serial number is the one thing to read in idle; reading it (with good
        # CRCs) proves a chip speaking this command set is there.
        self.serial_number = self.get_serial_number()
        self._command(START_COMMAND[mode])
        self._last_new = clock()  # the first measurement is due one period from here

    def _command(self, cmd: int) -> None:
        write_bytes(self.bus, self.address, [cmd >> 8, cmd & 0xFF])

    def _read_words(self, cmd: int, count: int, what: str) -> list[int]:
        self._command(cmd)
        self._sleep(READ_TIME_S)
        return check_words(read_bytes(self.bus, self.address, 3 * count),
                           f"SCD4x at 0x{self.address:02x} {what}")

    def stop_periodic_measurement(self) -> None:
        self._command(STOP_PERIODIC_MEASUREMENT)
        self._sleep(STOP_TIME_S)  # §3.5.3: the chip answers again only after 500 ms

    def get_serial_number(self) -> int:
        """§3.9.2: a 48-bit serial number in three words, most significant first."""
        w0, w1, w2 = self._read_words(GET_SERIAL_NUMBER, 3, "serial number")
        return (w0 << 32) | (w1 << 16) | w2

    def data_ready(self) -> bool:
        """§3.8.2: a measurement not yet read out is waiting."""
        (status,) = self._read_words(GET_DATA_READY_STATUS, 1, "data-ready status")
        return bool(status & DATA_READY_MASK)

    def read_measurement(self) -> dict[str, float]:
        """§3.5.2: one burst of CO2, T and RH (NACKed by the chip when nothing new is buffered)."""
        co2, s_t, s_rh = self._read_words(READ_MEASUREMENT, 3, "measurement")
        return convert(co2, s_t, s_rh)

    def read(self) -> dict[str, float]:
        if self.data_ready():
            self._last_new = self._clock()
            return self.read_measurement()
        quiet = self._clock() - self._last_new
        if quiet > STALE_AFTER_PERIODS * self.period:
            raise ConversionTimeout(
                f"SCD4x at 0x{self.address:02x}: no new measurement in {quiet:.1f} s "
                f"({self.mode} mode measures every {self.period:g} s)"
            )
        # Within a period of the last one (or of the start) the next is due then;
        # later than that, the chip's schedule is unknown here: the next slot.
        due_in = self.period - quiet + READY_MARGIN_S if quiet < self.period else None
        raise NoNewData(f"SCD4x at 0x{self.address:02x}: no new measurement yet "
                        f"({quiet:.1f} s after the last; it measures every {self.period:g} s)",
                        retry_in=due_in)


# -- the catalog entry ------------------------------------------------------------

class SCD4xConfig(I2CDevice):
    driver: Literal["scd4x"]
    address: I2CAddress = Field(default=0x62, description="0x62 (the SCD4x has no address pin).")
    mode: Literal["periodic", "low_power"] = Field(
        default="periodic",
        description="periodic: a measurement every 5 s (interval 5s or more); "
        "low_power: about every 30 s (interval 30s or more).",
    )

    @model_validator(mode="after")
    def _interval_not_below_period(self) -> SCD4xConfig:
        period = SIGNAL_UPDATE_INTERVAL_S[self.mode]
        if self.interval < period:
            # Validation runs with pydantic only (never in the daemon: gateway.config.plain).
            from pydantic import ValidationError
            from pydantic_core import InitErrorDetails, PydanticCustomError

            # Reported on `interval` (not on the device as a whole), so the error
            # line points at the key to change.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [InitErrorDetails(
                    type=PydanticCustomError(
                        "interval_below_period",
                        f"shorter than the {period:g} s measurement period of mode {self.mode}; "
                        f"use {period:g}s or more",
                    ),
                    loc=("interval",),
                    input=self.interval,
                )],
            )
        return self


def _make(bus: I2CBus, cfg: SCD4xConfig) -> SCD4x:
    return SCD4x(bus, cfg.address, mode=cfg.mode)


SPEC = DeviceSpec(
    driver="scd4x",
    summary="Sensirion SCD4x (SCD40/SCD41) CO2, temperature and humidity",
    kind="i2c",
    config=SCD4xConfig,
    quantities=("co2_ppm", "temperature_c", "humidity_pct"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x62,)),  # no id register: commands only
    reference="Sensirion Datasheet SCD4x",
    manufacturer="Sensirion",
    model="SCD4x",
    # CO2 in whole ppm; temperature and humidity as 16-bit words (175 °C, 100 %RH span).
    resolution=lambda cfg: {"co2_ppm": 1.0, "temperature_c": 175 / 65535,
                            "humidity_pct": 100 / 65535},
)
