"""StreamReader through real ptys: corrupted input, unplug/replug, bounded memory, rate limit."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocols.framer import LineFramer, SentenceFramer
from gateway.protocols.nmea import NmeaConfig
from gateway.readers.factory import make_reader
from gateway.readers.runner import DeviceRunner
from gateway.readers.serial import StreamReader
from hardware_sim.serial import GpsSim
from hardware_sim.serial.gps import nmea_sentence
from tests.serial_support import Collector, make_ctx, wait_until


def nmea_cfg(**extra: object) -> NmeaConfig:
    return NmeaConfig.model_validate(
        {"name": "gps", "driver": "nmea", "port": "/dev/ttyUSB-not-used", "timeout": 0.5, **extra}
    )


@pytest.fixture
def gps() -> Iterator[GpsSim]:
    dev = GpsSim("gps", {"rate_hz": 20})
    dev.start()
    yield dev
    dev.close()


def start_reader(gps: GpsSim, **extra: object) -> tuple[StreamReader, Collector]:
    cfg = nmea_cfg(**extra)
    ctx, col = make_ctx("gps", "nmea", {"gps": gps})
    reader = make_reader(cfg, ctx)
    assert isinstance(reader, StreamReader)  # the catalog's nmea entry is a line stream
    reader.start()
    return reader, col


def stop(reader: DeviceRunner) -> None:
    reader.stop()
    assert reader.join(10), "reader did not stop"
    assert not isinstance(reader, StreamReader) or reader.error is None


def test_reader_opens_the_simulators_pty_not_cfg_port(gps: GpsSim) -> None:
    reader, col = start_reader(gps)
    try:
        assert col.wait_for(lambda rs: len(rs) >= 3)
        assert os.path.realpath(gps.path).startswith("/dev/pts/")
        assert reader.ctx.health.state == "ok"
        # The first fix may be partial (opened mid-epoch); later ones are whole epochs.
        last = col.values()[-1]
        assert {"latitude_deg", "longitude_deg", "altitude_m", "satellites", "speed_kn",
                "course_deg", "fix_quality", "hdop", "gps_time"} <= set(last)
    finally:
        stop(reader)


def test_garbage_partial_and_bad_checksums_are_counted_never_published(gps: GpsSim) -> None:
    gps.bad_checksum_every = 3
    gps.garbage_every = 2
    gps.partial_every = 5
    reader, col = start_reader(gps)
    try:
        assert col.wait_for(lambda rs: len(rs) >= 5)
        counters = reader.ctx.health.counters
        # Garbage is skipped up to the next `$`; a half sentence is cut by the next one.
        assert wait_until(lambda: counters.get("bad_checksum", 0) >= 3
                          and counters.get("skipped_bytes", 0) >= 3
                          and counters.get("truncated_sentences", 0) >= 3)
        # Raw junk straight onto the line, including a sentence-looking line with a wrong sum.
        before_bad = counters.get("bad_checksum", 0)
        gps.inject(b"\x00\x01\x02garbage\xff\r\n"
                   b"$GPGGA,000000,0000.000,N,00000.000,E,1,08,0.9,0.0,M,,M,,*00\r\n")
        assert wait_until(lambda: counters.get("bad_checksum", 0) > before_bad)
    finally:
        stop(reader)
    for values in col.values():
        # The injected (0, 0) fix with the wrong checksum never made it through; every
        # published position is on the simulator's 200 m track around its centre.
        assert abs(values["latitude_deg"] - 48.1173) < 0.01
        assert abs(values["longitude_deg"] - 11.5167) < 0.01
        # An epoch whose GGA was corrupted publishes the RMC half only.
        assert values.get("satellites", 8) == 8


def test_ubx_frames_on_the_same_port_lose_no_sentence(gps: GpsSim) -> None:
    """A u-blox port with UBX and NMEA both on: a binary frame right before every
    second sentence, no newline between. Every epoch still publishes whole."""
    gps.ubx_every = 2
    reader, col = start_reader(gps)
    try:
        assert col.wait_for(lambda rs: len(rs) >= 8)
        counters = reader.ctx.health.counters
        assert counters["binary_frames"] >= 4
    finally:
        stop(reader)
    assert counters.get("bad_checksum", 0) == 0 and counters.get("malformed", 0) == 0
    assert counters.get("truncated_sentences", 0) == 0
    # Every reading but perhaps the first (opened mid-epoch) has both GGA and RMC fields.
    for values in col.values()[1:]:
        assert values["satellites"] == 8 and "speed_kn" in values


def test_first_sentence_after_the_port_opens_is_used() -> None:
    gps = GpsSim("gps", {"rate_hz": 20})
    gps.silent = True
    gps.start()
    try:
        reader, col = start_reader(gps)
        try:
            assert wait_until(lambda: reader.ctx.health.counters.get("opens", 0) >= 1)
            t0 = 1_700_000_000.0
            first, second = gps.sentences_at(t0), gps.sentences_at(t0 + 1)
            gps.inject(b"".join(nmea_sentence(b) for b in first + second))
            assert col.wait_for(lambda rs: len(rs) >= 1)
        finally:
            stop(reader)
    finally:
        gps.close()
    # The very first bytes after the open were a whole GGA: its fields are in the reading.
    values = col.values()[0]
    assert values["satellites"] == 8 and values["altitude_m"] == 545.4
    assert values["gps_time"] == "2023-11-14T22:13:20.00Z"


def test_unplug_then_replug_behind_the_same_symlink_recovers(gps: GpsSim) -> None:
    reader, col = start_reader(gps)
    try:
        assert col.wait_for(lambda rs: len(rs) >= 3)
        health = reader.ctx.health
        gps.unplug()
        assert not os.path.lexists(gps.path)
        assert wait_until(lambda: health.state == "failing")
        errors_when_unplugged = health.total_errors
        # Stays down while unplugged: reopen attempts fail (ENOENT) and back off.
        assert wait_until(lambda: health.total_errors > errors_when_unplugged)
        seen = col.count()
        gps.replug()
        assert gps.tty_path is not None and os.path.realpath(gps.path) == gps.tty_path
        assert col.wait_for(lambda rs: len(rs) >= seen + 3)
        assert wait_until(lambda: health.state == "ok")
        assert reader.alive  # the same thread, no restart
        assert health.counters["opens"] >= 2
        assert health.counters.get("port_errors", 0) >= 1
    finally:
        stop(reader)


def test_memory_is_bounded_without_newlines(gps: GpsSim) -> None:
    reader, col = start_reader(gps, max_line=256)
    try:
        assert col.wait_for(lambda rs: len(rs) >= 1)
        gps.silent = True  # only noise from now on
        framer = reader.framer  # type: ignore[attr-defined]
        assert isinstance(framer, SentenceFramer)
        # ~4 KB without a newline: binary, and a sentence start followed by endless text.
        chunk = (bytes(range(256)).replace(b"\n", b"") + b"$GPTXT," + b"A" * 600) * 4
        sent = 0
        for _ in range(256):  # ~1 MB in total
            written = 0
            while written == 0:
                written = gps.inject(chunk)
                if written == 0:
                    time.sleep(0.005)  # pty buffer full: let the reader drain it
            sent += written
            # Seen from this thread while the reader may be inside feed(): at most the
            # line limit plus the one read being framed (a pty holds 4095 bytes at most).
            assert framer.buffered <= 256 + 4096
        assert sent > 500_000
        assert wait_until(lambda: reader.ctx.health.counters.get("bytes_read", 0) > 500_000)
        assert wait_until(lambda: framer.buffered <= 256)  # once that read is framed
        assert reader.ctx.health.counters["overlong_lines"] >= 1
        # After the noise, the next complete sentence decodes again.
        n = col.count()
        gps.silent = False
        assert col.wait_for(lambda rs: len(rs) >= n + 2)
    finally:
        stop(reader)


def test_interval_limits_the_publish_rate(gps: GpsSim) -> None:
    reader, col = start_reader(gps, interval="300ms")
    try:
        assert col.wait_for(lambda rs: len(rs) >= 4)
        assert reader.ctx.health.counters.get("rate_limited", 0) >= 4  # 20 Hz in, ~3 Hz out
    finally:
        stop(reader)
    ts = [r.ts for r in col.readings]
    # Never faster than the interval (small tolerance for a 20 Hz receiver's jitter).
    assert min(b - a for a, b in itertools.pairwise(ts)) >= 0.3 * 0.9


def test_silence_marks_the_device_failing_and_data_recovers_it(gps: GpsSim) -> None:
    reader, col = start_reader(gps, silence_timeout="300ms")
    try:
        assert col.wait_for(lambda rs: len(rs) >= 1)
        gps.silent = True
        health = reader.ctx.health
        assert wait_until(lambda: health.state == "failing")
        assert health.counters["silences"] >= 1
        gps.silent = False
        assert wait_until(lambda: health.state == "ok")
    finally:
        stop(reader)


def test_absent_at_start_then_plugged_in() -> None:
    gps = GpsSim("gps", {"rate_hz": 20})
    gps.unplug()
    gps.start()
    try:
        reader, col = start_reader(gps)
        try:
            assert wait_until(lambda: reader.ctx.health.counters.get("open_errors", 0) >= 2)
            assert col.count() == 0
            gps.replug()
            assert col.wait_for(lambda rs: len(rs) >= 2)
        finally:
            stop(reader)
    finally:
        gps.close()


def test_framer_caps_and_resyncs() -> None:
    f = LineFramer(b"\n", max_line=8)
    assert f.feed(b"abc\r\nde") == [b"abc"]
    assert f.feed(b"f\n") == [b"def"]
    assert f.feed(b"0123456789") == []  # too long: dropped
    assert f.buffered == 0 and f.overlong == 1
    assert f.feed(b"more-noise\nok\n") == [b"ok"]  # resumes after the next newline
    f.resync()
    assert f.feed(b"tail-of-old\nnew\n") == [b"new"]


def test_port_settings_come_from_config(gps: GpsSim) -> None:
    reader, col = start_reader(gps, baudrate=4800, parity="even", stopbits=2, bytesize=7,
                               timeout="250ms")
    try:
        assert col.wait_for(lambda rs: len(rs) >= 1)
        port = reader.port  # type: ignore[attr-defined]
        assert (port.baudrate, port.parity, port.stopbits, port.bytesize, port.timeout) == (
            4800, "E", 2, 7, 0.25)
    finally:
        stop(reader)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
                   max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_framer_property(lines: list[bytes], cuts: list[int]) -> None:
    """However the stream is chunked: lines up to the cap come out intact, longer ones
    are dropped and counted, and the buffer never holds more than the cap."""
    cap = 16
    stream = b"".join(line + b"\n" for line in lines)
    f = LineFramer(b"\n", max_line=cap)
    out: list[bytes] = []
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for a, b in itertools.pairwise(bounds):
        out += f.feed(stream[a:b])
        assert f.buffered <= cap
    assert out == [line for line in lines if len(line) <= cap]
    assert f.overlong == sum(1 for line in lines if len(line) > cap)


def test_without_simulate_the_configured_port_is_opened(gps: GpsSim) -> None:
    """simulate: false opens cfg.port itself (here a by-id style symlink to the pty)."""
    cfg = nmea_cfg(port=gps.path)
    ctx, col = make_ctx("gps", "nmea", None)
    assert not ctx.simulate
    reader = make_reader(cfg, ctx)
    reader.start()
    try:
        assert col.wait_for(lambda rs: len(rs) >= 2)
        assert reader.path == gps.path  # type: ignore[attr-defined]
    finally:
        stop(reader)


def test_missing_simulated_device_is_a_retried_fault_not_a_crash() -> None:
    ctx, _col = make_ctx("gps", "nmea", {})
    reader = make_reader(nmea_cfg(), ctx)
    reader.start()
    try:
        assert wait_until(lambda: ctx.health.counters.get("open_errors", 0) >= 2)
        assert ctx.health.state == "failing" and reader.alive
    finally:
        stop(reader)


def test_sim_world_serves_every_serial_device_on_a_pty() -> None:
    from gateway.config import parse_config
    from hardware_sim.world import SimWorld

    regs = "registers: [{name: voltage, unit: v, address: 0, scale: 0.1}]"
    cfg = parse_config(f"""
gateway: {{id: t, simulate: true}}
devices:
  - {{name: gps, driver: nmea, port: /dev/ttyUSB0}}
  - {{name: mcu, driver: lines, port: /dev/ttyACM0, format: kv}}
  - {{name: m1, driver: modbus_rtu, port: /dev/ttyUSB1, slave: 1, {regs}}}
  - {{name: m2, driver: modbus_rtu, port: /dev/ttyUSB1, slave: 2, {regs}}}
""")
    world = SimWorld.from_config(cfg)
    try:
        paths = {name: world.extras[name].path for name in ("gps", "mcu", "m1", "m2")}
        for path in paths.values():
            assert os.path.realpath(path).startswith("/dev/pts/")
        # Two slaves on one configured port share one simulated RS-485 line.
        assert world.extras["m1"] is world.extras["m2"]
        assert set(world.extras["m1"].units) == {1, 2}
        # A device added later (config reload) joins the existing line.
        m3 = cfg.devices[3].model_copy(update={"name": "m3", "slave": 3})
        world.add_serial([m3])
        assert world.extras["m3"] is world.extras["m1"] and 3 in world.extras["m1"].units
        # Removing one device of the line keeps the line up for the others.
        world.extras.pop("m3").close()
        assert os.path.lexists(paths["m1"])
    finally:
        world.close()
    for path in paths.values():
        assert not os.path.lexists(path)
