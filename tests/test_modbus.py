"""Modbus RTU: CRC and register decoding from the specs, and polling a simulated slave on a pty."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from gateway.config import ConfigError, parse_config
from gateway.protocols.modbus import (
    Block,
    ModbusRtuConfig,
    RegisterSpec,
    crc16,
    crc_ok,
    decode_value,
    encode_value,
    plan_blocks,
    with_crc,
)
from gateway.readers.serial import ModbusReader, SharedPorts
from hardware_sim.serial import ModbusSlaveSim
from tests.serial_support import make_ctx, wait_until


def test_crc16_modbus_known_frames() -> None:
    # "Read 1 holding register at 0 from slave 1" is sent as 01 03 00 00 00 01 84 0A and
    # "read 10" as 01 03 00 00 00 0A C5 CD (CRC low byte first, Modbus over Serial Line §6.2.2).
    assert with_crc(bytes.fromhex("010300000001")) == bytes.fromhex("010300000001840A")
    assert with_crc(bytes.fromhex("01030000000A")).hex() == "01030000000ac5cd"
    # CRC-16/MODBUS check value (CRC catalogue): "123456789" -> 0x4B37.
    assert crc16(b"123456789") == 0x4B37
    assert crc_ok(bytes.fromhex("010300000001840A"))
    assert not crc_ok(bytes.fromhex("010300000001840B"))


def test_decode_types_and_word_order() -> None:
    # Registers are big-endian 16-bit words (application protocol §4.2).
    assert decode_value([0xFFFF], "int16") == -1
    assert decode_value([0xFFFF], "uint16") == 65535
    assert decode_value([0xFFFF, 0xFFFE], "int32") == -2
    assert decode_value([0x0001, 0x0002], "uint32") == 0x00010002
    assert decode_value([0x0002, 0x0001], "uint32", "little") == 0x00010002
    # IEEE 754 single: 200.0 is 0x43480000; -12.5 is 0xC1480000.
    assert decode_value([0x4348, 0x0000], "float32") == 200.0
    assert decode_value([0x0000, 0xC148], "float32", "little") == -12.5
    expect = struct.unpack(">f", bytes.fromhex("40490fdb"))[0]  # pi as float32
    assert decode_value([0x4049, 0x0FDB], "float32") == expect
    for dtype, value in (("int16", -300), ("uint32", 4_000_000_000), ("int32", -70000)):
        for order in ("big", "little"):
            assert decode_value(encode_value(value, dtype, order), dtype, order) == value  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decode_value([1], "float32")


def test_plan_blocks_groups_adjacent_registers_only() -> None:
    specs = [RegisterSpec(0, "a"), RegisterSpec(1, "b", "float32"), RegisterSpec(10, "c"),
             RegisterSpec(200, "d", "int32")]
    assert plan_blocks(specs) == [Block(0, 3), Block(10, 1), Block(200, 2)]
    many = [RegisterSpec(i, f"r{i}") for i in range(130)]
    assert [b.count for b in plan_blocks(many)] == [125, 5]  # §6.3: at most 125 per read


def meter_cfg(name: str = "meter", slave: int = 1, **extra: object) -> ModbusRtuConfig:
    return ModbusRtuConfig.model_validate({
        "name": name, "driver": "modbus_rtu", "port": "/dev/ttyRS485", "baudrate": 19200,
        "slave": slave, "interval": "100ms", "timeout": 1.0, "retries": 1,
        "registers": [
            {"name": "voltage", "unit": "v", "address": 0, "type": "uint16", "scale": 0.1},
            {"name": "current", "unit": "a", "address": 1, "type": "int16", "scale": 0.001},
            {"name": "power", "unit": "w", "address": 2, "type": "float32", "word_order": "little"},
            {"name": "energy", "unit": "wh", "address": 100, "type": "uint32"},
        ],
        **extra,
    })


@pytest.fixture
def line() -> Iterator[ModbusSlaveSim]:
    sim = ModbusSlaveSim("rs485")
    sim.start()
    yield sim
    sim.close()


def load_meter(sim: ModbusSlaveSim, slave: int, voltage_raw: int) -> None:
    # Raw register contents written directly, so the expected values below follow from
    # the register map by hand, not from the code under test.
    sim.set_registers(slave, "holding", 0, [voltage_raw, 0xFB2E])  # 0xFB2E = -1234 -> -1.234 A
    sim.set_registers(slave, "holding", 2, [0x0000, 0xC148])  # -12.5 W, low word first
    sim.set_registers(slave, "holding", 100, [0x0001, 0xE240])  # 123456 Wh


def test_polls_a_simulated_slave_on_a_pty(line: ModbusSlaveSim) -> None:
    load_meter(line, 1, 2314)
    ctx, col = make_ctx("meter", "modbus_rtu", {"meter": line})
    reader = ModbusReader(meter_cfg(), ctx, ports=SharedPorts())
    reader.start()
    try:
        assert col.wait_for(lambda rs: len(rs) >= 3)
    finally:
        reader.stop()
        assert reader.join(10)
    v = col.values()[0]
    assert v == {"voltage_v": pytest.approx(231.4), "current_a": pytest.approx(-1.234),
                 "power_w": -12.5, "energy_wh": 123456}
    assert line.requests >= 6  # two blocks per poll: 0..3 and 100..101


def test_crc_errors_timeouts_and_exceptions_are_counted_and_retried(line: ModbusSlaveSim) -> None:
    load_meter(line, 1, 2300)
    ctx, col = make_ctx("meter", "modbus_rtu", {"meter": line})
    reader = ModbusReader(meter_cfg(), ctx, ports=SharedPorts())
    reader.start()
    c = ctx.health.counters
    try:
        assert col.wait_for(lambda rs: len(rs) >= 2)
        # Every 2nd reply corrupted: pymodbus' retry gets the next one, and we count both.
        line.bad_crc_every = 2
        n = col.count()
        assert wait_until(lambda: c.get("crc_errors", 0) >= 3 and c.get("retries", 0) >= 3)
        assert col.wait_for(lambda rs: len(rs) >= n + 2)
        line.bad_crc_every = 0
        # A dead slave: timeouts, health failing, then recovery.
        line.silent = True
        assert wait_until(lambda: c.get("timeouts", 0) >= 1)
        assert wait_until(lambda: ctx.health.state == "failing")
        line.silent = False
        assert wait_until(lambda: ctx.health.state == "ok")
        # A register the slave does not have: exception 02 (illegal data address).
        del line.units[1]["holding"][100]
        assert wait_until(lambda: c.get("exception_responses", 0) >= 1)
        assert "illegal data address" in (ctx.health.last_error or "")
    finally:
        reader.stop()
        assert reader.join(15)
    assert all(v["voltage_v"] == pytest.approx(230.0) for v in col.values())


def test_unplug_replug_recovers(line: ModbusSlaveSim) -> None:
    load_meter(line, 1, 2300)
    ctx, col = make_ctx("meter", "modbus_rtu", {"meter": line})
    reader = ModbusReader(meter_cfg(), ctx, ports=SharedPorts())
    reader.start()
    try:
        assert col.wait_for(lambda rs: len(rs) >= 2)
        line.unplug()
        assert wait_until(lambda: ctx.health.state == "failing")
        n = col.count()
        line.replug()
        assert col.wait_for(lambda rs: len(rs) >= n + 2)
        assert ctx.health.state == "ok" and reader.alive
    finally:
        reader.stop()
        assert reader.join(15)


def test_two_slaves_share_one_port(line: ModbusSlaveSim) -> None:
    load_meter(line, 1, 2301)
    load_meter(line, 7, 2402)
    ports = SharedPorts()
    readers, cols = [], []
    for name, slave in (("m1", 1), ("m7", 7)):
        ctx, col = make_ctx(name, "modbus_rtu", {name: line})
        r = ModbusReader(meter_cfg(name, slave), ctx, ports=ports)
        r.start()
        readers.append(r)
        cols.append(col)
    try:
        assert cols[0].wait_for(lambda rs: len(rs) >= 5)
        assert cols[1].wait_for(lambda rs: len(rs) >= 5)
    finally:
        for r in readers:
            r.stop()
        for r in readers:
            assert r.join(15)
    assert all(v["voltage_v"] == pytest.approx(230.1) for v in cols[0].values())
    assert all(v["voltage_v"] == pytest.approx(240.2) for v in cols[1].values())
    # No interleaving on the wire: not one corrupted or unanswered request.
    for r in readers:
        assert r.ctx.health.total_errors == 0
    assert line.counters.get("bad_request_crc", 0) == 0


def test_config_allows_shared_ports_and_checks_maps() -> None:
    text = """
gateway: {id: t}
devices:
  - name: m1
    driver: modbus_rtu
    port: /dev/ttyUSB0
    slave: 1
    registers: [{name: voltage, unit: v, address: 0, scale: 0.1}]
  - name: m2
    driver: modbus_rtu
    port: /dev/ttyUSB0
    slave: 2
    function: input
    registers: [{name: power, unit: w, address: 0, type: float32, count: 2}]
"""
    cfg = parse_config(text)
    assert [d.name for d in cfg.devices] == ["m1", "m2"]
    with pytest.raises(ConfigError, match="float32 uses 2 register"):
        parse_config(text.replace("count: 2", "count: 1"))
    with pytest.raises(ConfigError, match="slave"):
        parse_config(text.replace("slave: 2", "slave: 248"))
    with pytest.raises(ConfigError, match="function"):
        parse_config(text.replace("function: input", "function: coils"))


def test_shared_port_settings_must_agree(line: ModbusSlaveSim) -> None:
    ports = SharedPorts()
    a = ports.acquire(line.path, meter_cfg("a"))
    try:
        with pytest.raises(ValueError, match="different serial settings"):
            ports.acquire(line.path, meter_cfg("b", baudrate=9600))
    finally:
        ports.release(a)
