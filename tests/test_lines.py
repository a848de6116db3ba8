"""Line protocols (json, csv, kv): decoding rules, and a simulated microcontroller on a real pty."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from gateway.protocols.lines import FieldSpec, LineDecoder, LinesConfig
from gateway.readers.factory import make_reader
from gateway.reading import ABSENT
from hardware_sim.serial import LinesSim
from hardware_sim.serial.pty import PtyDevice
from tests.serial_support import make_ctx, wait_until


def test_kv_untyped_keeps_numbers() -> None:
    d = LineDecoder("kv")
    assert d.feed(b"temp=21.5,hum=40\r") == {"temp": 21.5, "hum": 40}
    assert d.feed(b"temp:21.5, hum:40") == {"temp": 21.5, "hum": 40}
    # Text is not a reading by default (boot messages are text)...
    assert d.feed(b"temp=21.5,state=ok") is None
    # ...unless the device really sends one-word text values.
    keep = LineDecoder("kv", text_values="keep")
    assert keep.feed(b"temp=21.5,state=ok") == {"temp": 21.5, "state": "ok"}
    assert keep.feed(b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)") is None


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
    # nan (a failed sensor read) is "no value": the rest of the line publishes.
    assert d.feed(b"nan,10,1,x") == {"temperature_c": ABSENT, "raw": 5.0, "door": True, "label": "x"}
    assert d.counters["bad_lines"] == 2
    assert d.counters["lines"] == 2


def test_json_lines() -> None:
    d = LineDecoder("json")
    assert d.feed(b'{"co2_ppm": 612, "ok": true, "nested": {"a": 1}}') == {"co2_ppm": 612, "ok": True}
    assert d.counters["skipped_values"] == 1
    for bad in (b"[1,2]", b"{broken", b"\xff\xfe{", b'"text"'):
        assert d.feed(bad) is None
    assert d.feed(b"   ") is None  # blank lines are not errors
    assert d.feed(b"\xff\xfe\x00") is None  # nor is junk alone (a reset)
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


def test_typed_fields_accept_what_boards_print() -> None:
    d = LineDecoder("kv", [FieldSpec("count", "int"), FieldSpec("code", "int"),
                           FieldSpec("temp", "float", "c"), FieldSpec("flags", "int")])
    assert d.feed(b"count=007,code=08,temp=21.5C,flags=0x1F") == {
        "count": 7, "code": 8, "temp_c": 21.5, "flags": 31}
    # A configured field the line does not carry is absent (and listed as such).
    assert d.feed(b"count=1") == {"count": 1, "code": ABSENT, "temp_c": ABSENT, "flags": ABSENT}
    assert d.feed(b"count=1,temp=warm") is None  # the wrong kind of value: the line is bad


# One row per shape a real board prints: (id, config, bytes sent after the port opened,
# readings expected as published, counters expected; `lines` counts the end marker too).
ESP32_BOOT = (
    b"\x00\xffets Jun  8 2016 00:22:57\r\n\r\n"
    b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    b"configsip: 0, SPIWP:0xee\r\n"
    b"clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\r\n"
    b"mode:DIO, clock div:1\r\nload:0x3fff0030,len:1184\r\nload:0x40078000,len:13104\r\n"
    b"ho 0 tail 12 room 4\r\nload:0x40080400,len:3036\r\nentry 0x400805e4\r\n"
)
ESP8266_BOOT = (  # the ROM's 74880-baud text read at 115200 is junk, then the SDK's own
    b"\xf0\x1c\x8c\x9e\xec\x12\x0e\x00\x8c\r\n ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n\r\n"
    b"load 0x4010f000, len 3424, room 16 \r\ntail 0\r\nchksum 0x2e\r\n"
    b"load 0x3fff20b8, len 40, room 8 \r\ntail 0\r\nchksum 0x2b\r\ncsum 0x2b\r\nv00000000\r\n~ld\r\n"
)
TABLE: list[tuple[str, dict[str, object], bytes, list[dict[str, object]], dict[str, int]]] = [
    ("arduino-println-csv", {"format": "csv", "fields": [{"name": "t", "unit": "c"}, {"name": "h"}]},
     b"21.50,40.00\r\n21.50,40.00\r\n21.75,41.00\r\n",
     # csv cannot show whether its first line is whole: that one line is dropped.
     [{"t_c": 21.5, "h": 40.0}, {"t_c": 21.75, "h": 41.0}], {"partial_first_lines": 1}),
    ("esp32-boot-then-kv", {"format": "kv"}, ESP32_BOOT + b"temp=21.5,hum=40\r\n",
     [{"temp": 21.5, "hum": 40}], {"bad_lines": 10, "lines": 2}),
    ("esp8266-boot-then-kv", {"format": "kv"}, ESP8266_BOOT + b"temp=21.5,hum=40\r\n",
     [{"temp": 21.5, "hum": 40}], {"lines": 2}),
    ("bom-after-reset", {"format": "kv"},
     b"\xef\xbb\xbftemp=21.5,hum=40\r\n\x00\x00\xef\xbb\xbftemp=22.0,hum=41\r\n",
     [{"temp": 21.5, "hum": 40}, {"temp": 22.0, "hum": 41}], {"stripped_junk": 2}),
    ("zero-padded-ints", {"format": "kv", "fields": [{"name": "count", "type": "int"},
                                                      {"name": "id", "type": "int"}]},
     b"count=007,id=08\r\ncount=010,id=09\r\n",
     # kv with fields: the first line is whole when every key is a configured field.
     [{"count": 7, "id": 8}, {"count": 10, "id": 9}], {}),
    ("dht-nan-and-inf", {"format": "kv"},
     b"{}\r\nt=nan,h=40\r\nt=21.5,h=inf\r\nt=ovf,h=nan\r\nt=21.5,h=40\r\n",
     [{"h": 40, "absent": ["t"]}, {"t": 21.5, "absent": ["h"]}, {"t": 21.5, "h": 40}],
     {"bad_lines": 1, "partial_first_lines": 1}),
    ("unit-suffix-stripped", {"format": "kv"}, b"\x00temp=23.5C,hum=40%,p=1013.2 hPa\r\n",
     [{"temp": 23.5, "hum": 40, "p": 1013.2}], {}),
    ("unit-suffix-in-key", {"format": "kv", "unit_suffix": "key"},
     b"\x00temp=23.5C,hum=40%,p=1013.2 hPa\r\n", [{"temp_c": 23.5, "hum_pct": 40, "p_hpa": 1013.2}], {}),
    ("first-line-complete-json", {"format": "json"}, b'{"t": 21.5, "n": 1}\r\n{"t": 21.6, "n": 2}\r\n',
     [{"t": 21.5, "n": 1}, {"t": 21.6, "n": 2}], {}),
    ("first-line-partial-json", {"format": "json"}, b'5, "n": 1}\r\n{"t": 21.6, "n": 2}\r\n',
     [{"t": 21.6, "n": 2}], {"partial_first_lines": 1}),
    ("first-line-partial-kv", {"format": "kv"}, b"mp=21.5,hum=40\r\ntemp=21.6,hum=41\r\n",
     [{"temp": 21.6, "hum": 41}], {"partial_first_lines": 1}),
    ("device-seq-and-ts", {"format": "json"},
     b'{"seq": 5, "ts": 1700000000, "absent": 0, "temp": 21.5}\r\n',
     [{"device_seq": 5, "device_ts": 1700000000, "device_absent": 0, "temp": 21.5}],
     {"renamed_keys": 3}),
]


def _is_marker(values: dict[str, object]) -> bool:
    return all(v == -1 for k, v in values.items() if k != "absent")


@pytest.mark.parametrize(("config", "sent", "expected", "counters"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_microcontroller_output_through_a_real_pty(
        config: dict[str, object], sent: bytes, expected: list[dict[str, object]],
        counters: dict[str, int]) -> None:
    cfg = LinesConfig.model_validate({"name": "mcu", "driver": "lines", "port": "/dev/ttyACM0",
                                      "baudrate": 115200, "timeout": 0.5, **config})
    board = PtyDevice("mcu").start()
    ctx, col = make_ctx("mcu", "lines", {"mcu": board})
    reader = make_reader(cfg, ctx)
    reader.start()
    c = ctx.health.counters
    try:
        assert wait_until(lambda: c.get("opens", 0) >= 1)
        # A marker line (every value -1) after the case, so that "nothing more was
        # published" can be waited for.
        names = [f.name for f in cfg.fields] or ["end"]
        marker = {"json": f"{{\"{names[0]}\": -1}}", "csv": ",".join("-1" for _ in names),
                  "kv": ",".join(f"{n}=-1" for n in names)}[cfg.format].encode() + b"\r\n"
        assert board.write(sent + marker) == len(sent + marker)
        assert col.wait_for(lambda rs: any(_is_marker(r.values) for r in rs))
    finally:
        reader.stop()
        assert reader.join(10)
        board.close()
    got = [v for v in col.values() if not _is_marker(v)]
    assert got == expected
    for key, n in counters.items():
        assert c.get(key, 0) == n, (key, c)
