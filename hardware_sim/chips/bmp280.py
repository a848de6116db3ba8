"""BMP280 model: the BME280 model with chip id 0x58 and no humidity front end."""

from __future__ import annotations

from typing import Any

from hardware_sim.chips.bme280 import BME280Chip


class BMP280Chip(BME280Chip):
    DEFAULTS = {"temperature_c": 21.0, "pressure_hpa": 1013.25}
    CHIP_ID = 0x58

    def __init__(self, address: int, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        # No humidity trimming or registers on this chip (BMP280 DS §4.2 memory map).
        self.regs[0xA1] = 0
        self.regs[0xE1:0xE8] = bytes(7)

    def on_register_write(self, reg: int, value: int) -> None:
        if reg == 0xF2:
            return  # ctrl_hum does not exist on the BMP280
        super().on_register_write(reg, value)


MODEL = BMP280Chip
