"""The envelope rule, for every protocol: `seq`, `ts`, `clock`, `absent` belong to the gateway.

It is enforced at one place, `ReaderContext.emit` (via `reading.publishable`), which
every reader of every protocol goes through. Through real ptys: json lines in
test_lines.py (device-seq-and-ts), Modbus registers in test_modbus.py (a register
named `ts`, against pymodbus's server). Here: the rule itself, kv and csv lines,
NMEA and every built-in driver's fixed keys.
"""

from __future__ import annotations

import json
import math

import pytest

from gateway.catalog import specs
from gateway.homeassistant import device_keys
from gateway.protocols.lines import FieldSpec, LineDecoder
from gateway.protocols.nmea import NmeaDecoder, with_checksum
from gateway.reading import ABSENT, ENVELOPE, encode_payload, publishable
from tests.serial_support import make_ctx


def test_device_keys_never_overwrite_or_duplicate_the_envelope() -> None:
    values, renamed = publishable({"seq": 5, "ts": "x", "absent": 1, "clock": "rtc",
                                   "device_seq": 9, "t": 1.5})
    assert renamed == 4
    assert values == {"device_device_seq": 5, "device_ts": "x", "device_absent": 1,
                      "device_clock": "rtc", "device_seq": 9, "t": 1.5}
    payload = json.loads(encode_payload(10, 0.0, values))
    assert payload["seq"] == 10 and payload["ts"] == "1970-01-01T00:00:00.000Z"
    assert payload["device_device_seq"] == 5 and payload["device_seq"] == 9


def test_unusable_values_are_listed_under_absent() -> None:
    values, _ = publishable({"a": 1.0, "b": math.nan, "c": ABSENT, "d": -math.inf, "e": "x"})
    assert values == {"a": 1.0, "e": "x", "absent": ["b", "c", "d"]}
    assert publishable({"a": 1})[0] == {"a": 1}  # no `absent` key when nothing is


@pytest.mark.parametrize(("decoder", "line", "published"), [
    (LineDecoder("kv"), b"seq=5,ts=12,temp=21.5",
     {"device_seq": 5, "device_ts": 12, "temp": 21.5}),
    (LineDecoder("json"), b'{"seq": 5, "temp": 21.5}', {"device_seq": 5, "temp": 21.5}),
    (LineDecoder("csv", [FieldSpec("seq", "int"), FieldSpec("ts", "int"), FieldSpec("temp")]),
     b"5,12,nan", {"device_seq": 5, "device_ts": 12, "absent": ["temp"]}),
])
def test_lines_through_emit(decoder: LineDecoder, line: bytes, published: dict[str, object]) -> None:
    ctx, col = make_ctx("mcu", "lines")
    record = decoder.feed(line)
    assert record is not None
    ctx.emit(record, 1.0)
    assert col.values() == [published]
    assert ctx.health.counters["renamed_keys"] == sum(k in ENVELOPE for k in record)


def test_nmea_and_builtin_drivers_publish_no_envelope_key() -> None:
    for spec in specs().values():
        assert not set(spec.quantities) & set(ENVELOPE), spec.driver
    d = NmeaDecoder()
    fixes = []
    for t in ("130711", "130712"):
        fixes += d.feed(with_checksum(f"GPGGA,{t},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"))
    assert fixes and not set(fixes[0]) & set(ENVELOPE)


def test_discovery_names_the_renamed_key() -> None:
    from gateway.config import parse_config

    cfg = parse_config("""
gateway: {id: t}
devices:
  - {name: m, driver: modbus_rtu, port: /dev/ttyUSB0, registers: [{name: ts, address: 0}]}
""")
    assert device_keys(cfg.devices[0]) == ["device_ts"]
