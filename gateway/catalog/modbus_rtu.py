"""`driver: modbus_rtu` — one Modbus RTU slave (RS-485 meter, PLC) polled with pymodbus.

Several slaves on one RS-485 line are several devices with the same `port`
(`shares_port`): each has its own topic, schedule and health, and they share
one pymodbus client and one lock, so requests never interleave on the wire.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from gateway.catalog.spec import DeviceSpec, UserField
from gateway.config.model import Section, SerialDevice
from gateway.config.types import FieldDeviceClass
from gateway.protocols.modbus import RegisterSpec
from gateway.quantities import check_device_class

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
    return [RegisterSpec(r.address, r.name, r.type, r.word_order, r.scale, r.offset, r.unit)
            for r in cfg.registers]


def _user_fields(cfg: ModbusRtuConfig) -> tuple[UserField, ...]:
    # Integer registers step by `scale`; a float32 has no fixed step.
    return tuple(
        UserField(r.name, r.unit, True, r.device_class,
                  None if r.type == "float32" or r.scale == 0 else abs(r.scale))
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
