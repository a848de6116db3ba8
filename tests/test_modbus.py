"""Modbus RTU: CRC and register decoding from the specs, and polling a simulated slave on a pty."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

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
    physical,
    plan_blocks,
    with_crc,
)
from gateway.readers.serial import ModbusReader, SharedPorts
from gateway.reading import ABSENT
from hardware_sim.serial import ModbusSlaveSim
from hardware_sim.serial.pty import PtyDevice
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


def test_float32_is_published_as_the_float32_it_is() -> None:
    """float32 holds 6-9 significant digits: 0x4366199A is 230.1, not 230.10000610351562."""
    spec = RegisterSpec(0, "v", "float32")
    assert physical(spec, [0x4366, 0x199A]) == 230.1
    # 123456.78 as float32 is 123456.78125; 123456.8 would be another float32.
    assert physical(spec, encode_value(123456.78, "float32")) == 123456.78
    assert physical(spec, [0x4B7F, 0xFFFF]) == 16777215.0  # every digit kept when it is exact
    # Scale without the binary noise of the multiplication; `decimals` rounds on request.
    assert physical(RegisterSpec(0, "v", "uint16", scale=0.1), [2314]) == 231.4
    assert physical(RegisterSpec(0, "f", "float32", decimals=1), encode_value(49.987, "float32")) == 50.0
    # NaN / infinity: this value is absent, nothing raised.
    assert physical(spec, [0x7FC0, 0x0000]) is ABSENT
    assert physical(spec, [0x7F80, 0x0000]) is ABSENT


class _Wire(PtyDevice):
    """One end of a pty pair joined like a null-modem cable (what socat would do):
    bytes written to this end's tty come out of the peer's tty, after `delay`."""

    def __init__(self, name: str, delay: float = 0.0) -> None:
        super().__init__(name)
        self.peer: _Wire | None = None
        self.delay = delay
        self.received: list[float] = []

    def on_input(self, data: bytes) -> None:
        self.received.append(time.time())
        if self.delay:
            time.sleep(self.delay)  # a slow slave / busy bus, on this thread only
        assert self.peer is not None
        self.peer.write(data)


@pytest.fixture
def pymodbus_slave() -> Iterator[tuple[_Wire, _Wire]]:
    """pymodbus's own RTU server on one end of a pty pair; the gateway opens the other."""
    from pymodbus.framer import FramerType
    from pymodbus.server import ModbusSerialServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    server_end, gateway_end = _Wire("slave", delay=0.3), _Wire("gateway")
    server_end.peer, gateway_end.peer = gateway_end, server_end
    server_end.start()
    gateway_end.start()
    # pymodbus encodes the values itself: the expected numbers below are what was asked for.
    device = SimDevice(1, simdata=[
        SimData(0, values=230.1, datatype=DataType.FLOAT32),           # voltage_v
        SimData(2, values=float("nan"), datatype=DataType.FLOAT32),    # power_w: NaN
        SimData(4, values=123456.78, datatype=DataType.FLOAT32),       # energy_kwh
        SimData(6, values=[2314, 0xFB2E, 7], datatype=DataType.REGISTERS),
        SimData(100, values=49.987, datatype=DataType.FLOAT32),        # frequency, decimals 1
    ])
    loop = asyncio.new_event_loop()
    servers: list[Any] = []
    ready = threading.Event()

    async def serve() -> None:
        server = ModbusSerialServer(device, framer=FramerType.RTU, port=server_end.path,
                                    baudrate=19200)
        servers.append(server)
        ready.set()
        await server.serve_forever()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),),
                              name="pymodbus-server", daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield server_end, gateway_end
    finally:
        asyncio.run_coroutine_threadsafe(servers[0].shutdown(), loop).result(10)
        thread.join(10)
        loop.close()
        server_end.close()
        gateway_end.close()


def test_reader_against_pymodbus_serial_server(pymodbus_slave: tuple[_Wire, _Wire]) -> None:
    _server_end, gateway_end = pymodbus_slave
    cfg = ModbusRtuConfig.model_validate({
        "name": "meter", "driver": "modbus_rtu", "port": "/dev/ttyRS485", "baudrate": 19200,
        "slave": 1, "interval": "200ms", "timeout": 3.0, "retries": 1,
        "registers": [
            {"name": "voltage", "unit": "v", "address": 0, "type": "float32"},
            {"name": "power", "unit": "w", "address": 2, "type": "float32"},
            {"name": "energy", "unit": "kwh", "address": 4, "type": "float32"},
            {"name": "voltage_raw", "address": 6, "scale": 0.1},
            {"name": "current", "unit": "a", "address": 7, "type": "int16", "scale": 0.001},
            {"name": "ts", "address": 8},  # a register named like the envelope's ts
            {"name": "frequency", "unit": "hz", "address": 100, "type": "float32", "decimals": 1},
        ],
    })
    ctx, col = make_ctx("meter", "modbus_rtu", {"meter": gateway_end})
    reader = ModbusReader(cfg, ctx, ports=SharedPorts())
    reader.start()
    try:
        assert col.wait_for(lambda rs: len(rs) >= 2)
    finally:
        reader.stop()
        assert reader.join(15)
    first = col.readings[0]
    # One NaN register costs that value only: the others publish, the NaN is listed.
    assert first.values == {
        "voltage_v": 230.1, "energy_kwh": 123456.78, "voltage_raw": 231.4, "current_a": -1.234,
        "device_ts": 7, "frequency_hz": 50.0, "absent": ["power_w"]}
    assert ctx.health.counters["bad_values"] >= 2
    assert ctx.health.counters["renamed_keys"] >= 2
    assert ctx.health.total_errors == 0
    # ts is when the (last) reply arrived, not when the poll began: each reply here
    # comes 0.3 s after its request (two blocks per poll: 0..8 and 100..101).
    requests = gateway_end.received
    assert first.ts >= requests[0] + 0.6
