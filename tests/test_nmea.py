"""NMEA 0183 decoding against published example sentences, and a simulated GPS on a real pty."""

from __future__ import annotations

import math
import time
from functools import reduce

import pytest
import serial

from gateway.protocols.nmea import (
    ChecksumError,
    NmeaDecoder,
    NmeaError,
    checksum,
    decode_gga,
    decode_rmc,
    parse_sentence,
    with_checksum,
)
from hardware_sim.serial import GpsSim

# The classic textbook pair (gpsinformation.org "NMEA data", also in many receiver
# manuals): 12:35:19 UTC, 48°07.038' N 11°31.000' E, 23 March 1994. The checksums
# *47 and *6A are the published ones.
GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
# Widely published multi-constellation (GN talker) examples, western hemisphere.
GNGGA = "$GNGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M,,*47"
GNRMC = "$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B"
# Southern/western hemisphere with a computed (not published) checksum.
SOUTH_BODY = "GPGGA,010203,3351.000,S,15112.000,W,2,05,1.5,-3.0,M,,M,,"


def xor(text: str) -> int:
    return reduce(lambda a, b: a ^ b, text.encode("ascii"), 0)


def test_published_checksums_match() -> None:
    assert checksum(GGA[1:GGA.index("*")]) == 0x47
    assert checksum(RMC[1:RMC.index("*")]) == 0x6A
    for s in (GGA, RMC, GNGGA, GNRMC):
        # The independent XOR agrees with the published value.
        assert xor(s[1:s.index("*")]) == int(s[-2:], 16)
        parse_sentence(s)


def test_gga_fields() -> None:
    v = decode_gga(parse_sentence(GGA))
    assert v["latitude_deg"] == pytest.approx(48 + 7.038 / 60, abs=1e-9)
    assert v["longitude_deg"] == pytest.approx(11 + 31.000 / 60, abs=1e-9)
    assert v["altitude_m"] == 545.4
    assert v["fix_quality"] == 1
    assert v["satellites"] == 8
    assert v["hdop"] == 0.9
    assert v["time"] == "12:35:19"


def test_rmc_fields() -> None:
    v = decode_rmc(parse_sentence(RMC))
    assert v["speed_kn"] == 22.4
    assert v["course_deg"] == 84.4
    assert v["date"] == "1994-03-23"
    assert v["latitude_deg"] == pytest.approx(48.1173, abs=1e-9)


def test_any_talker_and_west_is_negative() -> None:
    s = parse_sentence(GNGGA)
    assert (s.talker, s.kind) == ("GN", "GGA")
    v = decode_gga(s)
    assert v["latitude_deg"] == pytest.approx(44 + 4.14036 / 60, abs=1e-9)
    assert v["longitude_deg"] == pytest.approx(-(121 + 18.85961 / 60), abs=1e-9)
    assert v["altitude_m"] == 1113.0  # the MSL altitude field, not the geoid separation (-21.3)
    r = decode_rmc(parse_sentence(GNRMC))
    assert r["date"] == "2017-01-10"
    assert "course_deg" not in r  # empty field: absent, not zero
    south = decode_gga(parse_sentence(f"${SOUTH_BODY}*{xor(SOUTH_BODY):02X}"))
    assert south["latitude_deg"] == pytest.approx(-(33 + 51 / 60))
    assert south["longitude_deg"] == pytest.approx(-(151 + 12 / 60))
    assert south["altitude_m"] == -3.0


def test_decoder_merges_one_epoch_and_counts_rejects() -> None:
    d = NmeaDecoder()
    assert d.feed(GGA.encode()) == []
    (fix,) = d.feed(RMC.encode())
    assert fix["latitude_deg"] == pytest.approx(48.1173)
    assert fix["satellites"] == 8 and fix["speed_kn"] == 22.4
    assert fix["gps_time"] == "1994-03-23T12:35:19Z"
    # One flipped character: the checksum no longer matches.
    assert d.feed(GGA.replace("545.4", "545.5").encode()) == []
    # Wrong checksum digits, no checksum, truncated, binary junk, a short field list.
    assert d.feed(GGA[:-2].encode() + b"48") == []
    assert d.feed(GGA[: GGA.index("*")].encode()) == []
    assert d.feed(GGA[:30].encode()) == []
    assert d.feed(b"\x00\xff\xfe$\x80") == []
    short = "GPGGA,123519,4807.038,N"
    assert d.feed(f"${short}*{xor(short):02X}".encode()) == []
    gsv = "GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"
    assert d.feed(f"${gsv}*{xor(gsv):02X}".encode()) == []
    assert d.counters["bad_checksum"] == 2
    assert d.counters["malformed"] == 4
    assert d.counters["ignored"] == 1
    assert d.counters["sentences"] == 2


def test_no_fix_publishes_quality_zero_without_position() -> None:
    body = "GPGGA,123520,,,,,0,00,99.9,,M,,M,,"
    v = decode_gga(parse_sentence(f"${body}*{xor(body):02X}"))
    assert v["fix_quality"] == 0 and v["satellites"] == 0
    assert "latitude_deg" not in v and "altitude_m" not in v


def test_errors_are_specific() -> None:
    with pytest.raises(ChecksumError):
        parse_sentence(GGA[:-2] + "00")
    with pytest.raises(NmeaError):
        parse_sentence("$GPGGA,123519*ZZ")
    body = "GPGGA,123519,4860.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"  # 60 minutes
    with pytest.raises(NmeaError):
        decode_gga(parse_sentence(f"${body}*{xor(body):02X}"))


def test_simulated_gps_on_a_real_pty() -> None:
    """The simulator's sentences, read through pyserial from a pty, decode to its track."""
    gps = GpsSim("gps", {"rate_hz": 10, "lat": -33.85, "lon": 151.2, "radius_m": 100,
                         "speed_kn": 12.0, "talker": "GN"}).start()
    try:
        port = serial.Serial(gps.path, 9600, timeout=0.2)
        d = NmeaDecoder()
        fixes: list[dict[str, object]] = []
        buf = b""
        deadline = time.monotonic() + 30
        while len(fixes) < 5 and time.monotonic() < deadline:
            buf += port.read(max(1, port.in_waiting))
            *lines, buf = buf.split(b"\n")
            for line in lines:
                fixes += d.feed(line)
        port.close()
    finally:
        gps.close()
    assert len(fixes) >= 5, d.counters
    assert d.counters.get("bad_checksum", 0) == 0
    for fix in fixes:
        lat, lon = float(fix["latitude_deg"]), float(fix["longitude_deg"])  # type: ignore[arg-type]
        # Equirectangular distance from the centre: the track is a 100 m circle.
        north = (lat - -33.85) * 111_320.0
        east = (lon - 151.2) * 111_320.0 * math.cos(math.radians(-33.85))
        assert math.hypot(north, east) == pytest.approx(100.0, abs=0.5)
        assert fix["speed_kn"] == 12.0
        assert fix["satellites"] == 8
    # It moves: consecutive fixes differ.
    assert len({(f["latitude_deg"], f["longitude_deg"]) for f in fixes}) > 1


def test_a_decoder_for_gga_only_ignores_rmc_and_finishes_each_fix_on_gga() -> None:
    d = NmeaDecoder(sentences=frozenset({"GGA"}))
    gga = with_checksum("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    rmc = with_checksum("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
    assert d.feed(rmc) == []
    (fix,) = d.feed(gga)  # complete at once: no RMC is expected
    assert set(fix) == {"latitude_deg", "longitude_deg", "altitude_m", "fix_quality",
                        "satellites", "hdop"}
    assert d.counters["ignored"] == 1
