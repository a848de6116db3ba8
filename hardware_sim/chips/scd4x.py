"""SCD4x model: 16-bit commands, CRC-protected words, its own measurement cadence (Datasheet SCD4x §3).

The chip is idle until started; in periodic mode a new measurement is due every
5 s (low power: 30 s) on the simulator's clock, counted from the start command.
A measurement can be read out once (§3.5.2): read_measurement NACKs its read
when nothing new is buffered, which is also the case in idle. Commands the
datasheet does not allow while measuring (§3.4 Table 9) are NACKed then, and a
command with an execution time (stop 500 ms, reinit 20 ms, single shot 5 s)
keeps the chip from answering until it is done.

Encodes with the inverse of §3.5.2: word[0] = CO2 ppm, word[1] = (T + 45)·2^16/175,
word[2] = RH·2^16/100, then CRC-8 per word (§3.11).
"""

from __future__ import annotations

import math
from typing import Any

from hardware_sim.i2c import SimChip, nack, sensirion_words

START_PERIODIC_MEASUREMENT = 0x21B1
READ_MEASUREMENT = 0xEC05
STOP_PERIODIC_MEASUREMENT = 0x3F86
START_LOW_POWER_PERIODIC_MEASUREMENT = 0x21AC
GET_DATA_READY_STATUS = 0xE4B8
GET_SERIAL_NUMBER = 0x3682
REINIT = 0x3646
MEASURE_SINGLE_SHOT = 0x219D

#: Signal update interval of each periodic mode, seconds (§3.5.1, §3.8.1).
PERIOD_S = {START_PERIODIC_MEASUREMENT: 5.0, START_LOW_POWER_PERIODIC_MEASUREMENT: 30.0}
#: Commands accepted while a periodic measurement runs (Table 9, column "During meas.").
DURING_MEASUREMENT = {READ_MEASUREMENT, STOP_PERIODIC_MEASUREMENT, GET_DATA_READY_STATUS}
#: Execution times that keep the chip busy, seconds (Table 9).
BUSY_S = {STOP_PERIODIC_MEASUREMENT: 0.5, REINIT: 0.020, MEASURE_SINGLE_SHOT: 5.0}
#: get_data_ready_status words: the upper bits are not part of the flag (§3.8.2); the
#: model sets one so a driver comparing the whole word with 0 is caught.
NOT_READY_WORD = 0x8000
READY_WORD = 0x8006
CO2_MAX_PPM = 40000  # output range 0 - 40'000 ppm (datasheet, features on page 1)


def encode(co2_ppm: float, temperature_c: float, humidity_pct: float) -> tuple[int, int, int]:
    co2 = round(min(float(CO2_MAX_PPM), max(0.0, co2_ppm)))
    s_t = min(0xFFFF, max(0, round((temperature_c + 45.0) * 65536.0 / 175.0)))
    s_rh = min(0xFFFF, max(0, round(min(100.0, max(0.0, humidity_pct)) * 65536.0 / 100.0)))
    return co2, s_t, s_rh


class SCD4xChip(SimChip):
    DEFAULTS = {"co2_ppm": 600.0, "temperature_c": 22.0, "humidity_pct": 45.0}

    def __init__(self, address: int, *, serial_number: int = 0xF896_9F07_3BBE,
                 variant: str = "scd41", **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        if variant not in ("scd40", "scd41"):
            raise ValueError(f"variant must be scd40 or scd41, not {variant!r}")
        if not 0 <= serial_number < 1 << 48:
            raise ValueError("serial_number must fit in 48 bits")
        self.serial_number = serial_number
        self.variant = variant
        self.commands: list[int] = []
        self.measurements = 0  # measurements read out
        self._power_on()

    def _power_on(self) -> None:
        self.running: int | None = None  # the start command of the running periodic mode
        self._started_at = 0.0
        self._taken = 0  # periodic: index of the last measurement read out
        self._single_due: float | None = None  # single shot: when its result is ready
        self._busy_until = -math.inf
        self._last: int | None = None  # the command a following read answers

    # -- state ------------------------------------------------------------------
    def start(self, command: int = START_PERIODIC_MEASUREMENT) -> None:
        """Start a periodic mode as if by command (e.g. a previous process left it running)."""
        self.running = command
        self._started_at = self.clock()
        self._taken = 0

    def _latest(self) -> int:
        """Periodic: the index of the newest finished measurement (0: none yet)."""
        assert self.running is not None
        return math.floor((self.clock() - self._started_at) / PERIOD_S[self.running])

    def data_ready(self) -> bool:
        if self.faults.slow_conversion:
            return False  # the measurement never finishes
        if self.running is not None:
            return self._latest() > self._taken
        return self._single_due is not None and self.clock() >= self._single_due

    def _take(self) -> bytes | None:
        if not self.data_ready():
            return None
        if self.running is not None:
            self._taken = self._latest()
        else:
            self._single_due = None
        self.measurements += 1
        v = self.values_now()
        return sensirion_words(encode(v["co2_ppm"], v["temperature_c"], v["humidity_pct"]),
                               corrupt=self.faults.corrupt_crc)

    # -- faults -----------------------------------------------------------------
    def check_present(self) -> None:
        try:
            super().check_present()
        except OSError:
            if self.faults.nack or self.clock() < self.faults.absent_until:
                self._power_on()  # unplugged: it comes back idle, as after a power cycle
            raise

    # -- transactions -----------------------------------------------------------
    def write(self, data: bytes) -> None:
        now = self.clock()
        if now < self._busy_until or len(data) != 2:
            raise nack(self.address)  # busy; or not one of the argument-less commands modelled
        cmd = (data[0] << 8) | data[1]
        self.commands.append(cmd)
        self._last = None
        if self.running is not None and cmd not in DURING_MEASUREMENT:
            raise nack(self.address)  # Table 9: not available during periodic measurement
        if cmd in PERIOD_S:
            self.start(cmd)
        elif cmd == STOP_PERIODIC_MEASUREMENT:
            self.running = None
        elif cmd == MEASURE_SINGLE_SHOT:
            if self.variant != "scd41":
                raise nack(self.address)  # SCD41 only
            self._single_due = now + BUSY_S[cmd]
        elif cmd == REINIT:
            self._single_due = None
        elif cmd in (READ_MEASUREMENT, GET_DATA_READY_STATUS, GET_SERIAL_NUMBER):
            self._last = cmd
        else:
            raise nack(self.address)  # unknown commands are not acknowledged
        if cmd in BUSY_S:
            self._busy_until = now + BUSY_S[cmd]

    def read(self, n: int) -> bytes:
        cmd, self._last = self._last, None
        if self.clock() < self._busy_until:
            raise nack(self.address)
        if cmd == READ_MEASUREMENT:
            data = self._take()
            if data is None:
                raise nack(self.address)  # §3.5.2: no data in the buffer -> NACK
        elif cmd == GET_DATA_READY_STATUS:
            data = sensirion_words([READY_WORD if self.data_ready() else NOT_READY_WORD],
                                   corrupt=self.faults.corrupt_crc)
        elif cmd == GET_SERIAL_NUMBER:
            sn = self.serial_number
            data = sensirion_words([sn >> 32, (sn >> 16) & 0xFFFF, sn & 0xFFFF],
                                   corrupt=self.faults.corrupt_crc)
        else:
            raise nack(self.address)  # nothing to send
        return (data + b"\xff" * n)[:n]


MODEL = SCD4xChip
