"""Line protocols (json, csv, kv): decoding rules, and a simulated microcontroller on a real pty."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from gateway.protocols.lines import FieldSpec, LineDecoder, LinesConfig
from gateway.readers.factory import make_reader
from hardware_sim.serial import LinesSim
from tests.serial_support import make_ctx, wait_until


def test_kv_untyped_keeps_numbers() -> None:
    d = LineDecoder("kv")
    assert d.feed(b"temp=21.5,hum=40,state=ok\r") == {"temp": 21.5, "hum": 40, "state": "ok"}
    assert d.feed(b"temp:21.5, hum:40") == {"temp": 21.5, "hum": 40}


def test_kv_with_fields_renames_by_unit_and_types() -> None:
    d = LineDecoder("kv", [FieldSpec("temp", "float", "c"), FieldSpec("count", "int")])
    assert d.feed(b"temp=21.5,count=7,other=1") == {"temp_c": 21.5, "count": 7}
    assert d.feed(b"temp=warm,count=7") is None  # a configured field that does not convert
    assert d.counters["bad_lines"] == 1


def test_csv_positional_with_types_units_and_scale() -> None:
    fields = [FieldSpec("temperature", "float", "c"), FieldSpec("raw", "int", scale=0.5),
              FieldSpec("door", "bool"), FieldSpec("label", "str")]
    d = LineDecoder("csv", fields)
    assert d.feed(b"21.25, 10, 1, north") == {
        "temperature_c": 21.25, "raw": 5.0, "door": True, "label": "north"}
    assert d.feed(b"21.25,10,1") is None  # a column short
    assert d.feed(b"21.25,10,maybe,x") is None  # not a boolean
    assert d.feed(b"nan,10,1,x") is None  # not publishable as JSON
    assert d.counters["bad_lines"] == 3
    assert d.counters["lines"] == 1


def test_json_lines() -> None:
    d = LineDecoder("json")
    assert d.feed(b'{"co2_ppm": 612, "ok": true, "nested": {"a": 1}}') == {"co2_ppm": 612, "ok": True}
    assert d.counters["skipped_values"] == 1
    for bad in (b"[1,2]", b"{broken", b"\xff\xfe", b'"text"'):
        assert d.feed(bad) is None
    assert d.feed(b"   ") is None  # blank lines are not errors
    assert d.counters["bad_lines"] == 4
    typed = LineDecoder("json", [FieldSpec("t", "float", "c")])
    assert typed.feed(b'{"t": "21.5"}') == {"t_c": 21.5}
    assert typed.feed(b'{"x": 1}') is None


def test_config_validation() -> None:
    base = "gateway: {id: t}\ndevices:\n  - {name: mcu, driver: lines, port: /dev/ttyACM0, "
    with pytest.raises(ConfigError, match="csv needs"):
        parse_config(base + "format: csv}\n")
    with pytest.raises(ConfigError, match="format"):
        parse_config(base + "format: xml}\n")
    with pytest.raises(ConfigError, match="same key twice"):
        parse_config(base + "format: kv, fields: [{name: t, unit: c}, {name: t_c}]}\n")
    with pytest.raises(ConfigError, match="baud"):
        parse_config(base + "format: kv, baudrate: 12345}\n")
    cfg = parse_config(base + "format: csv, parity: even, stopbits: 2, fields: [{name: t}]}\n")
    dev = cfg.devices[0]
    assert isinstance(dev, LinesConfig) and dev.parity == "even" and dev.stopbits == 2


@pytest.mark.parametrize("fmt", ["json", "csv", "kv"])
def test_simulated_microcontroller_through_a_real_pty(fmt: str) -> None:
    cfg = LinesConfig.model_validate({
        "name": "mcu", "driver": "lines", "port": "/dev/ttyACM0", "format": fmt,
        "baudrate": 115200, "timeout": 0.5,
        "fields": [{"name": "temp", "unit": "c"}, {"name": "hum", "unit": "pct"},
                   {"name": "count", "type": "int"}],
    })
    sim = LinesSim("mcu", fmt, [("temp", "float"), ("hum", "float"), ("count", "int")],
                   sim={"rate_hz": 20, "values": {"temp": 21.5, "hum": 40.25, "count": 3},
                        "bad_every": 4})
    sim.start()
    ctx, col = make_ctx("mcu", "lines", {"mcu": sim})
    reader = make_reader(cfg, ctx)
    reader.start()
    try:
        assert col.wait_for(lambda rs: len(rs) >= 5)
        assert wait_until(lambda: ctx.health.counters.get("bad_lines", 0) >= 1)
    finally:
        reader.stop()
        assert reader.join(10)
        sim.close()
    assert all(v == {"temp_c": 21.5, "hum_pct": 40.25, "count": 3} for v in col.values())
