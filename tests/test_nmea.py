"""NMEA 0183 decoding against published example sentences, and a simulated GPS on a real pty."""

from __future__ import annotations

import math
import time
from functools import reduce

import pytest
import serial

from gateway.protocols.framer import SentenceFramer, ubx_checksum
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
from gateway.reading import ABSENT, publishable
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
    # Until the receiver's pattern is known, an epoch ends when the next one starts.
    assert d.feed(RMC.encode()) == []
    (fix,) = d.flush()
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
    # One bad field costs that field, not the sentence: the position is absent, the rest kept.
    v = decode_gga(parse_sentence(f"${body}*{xor(body):02X}"))
    assert v["latitude_deg"] is ABSENT and v["longitude_deg"] is ABSENT
    assert v["fix_quality"] == 1 and v["satellites"] == 8 and v["altitude_m"] == 545.4


def sentence(body: str) -> bytes:
    return f"${body}*{xor(body):02X}".encode()


def run(*bodies: str, dead_reckoning: bool = False) -> tuple[list[dict[str, object]], NmeaDecoder]:
    """Feed sentences, end the input; the published readings (envelope rule applied)."""
    d = NmeaDecoder(dead_reckoning=dead_reckoning)
    out: list[dict[str, object]] = []
    for body in bodies:
        out += d.feed(sentence(body))
    out += d.flush()
    return [publishable(r)[0] for r in out], d


POS = "4807.038,N,01131.000,E"


@pytest.mark.parametrize(("quality", "status", "mode"), [
    (6, "V", "E"),   # dead reckoning: an estimate, not a fix
    (8, "V", "S"),   # simulator mode
    (7, "A", "M"),   # manual input: the receiver did not compute it
    (0, "A", "A"),   # GGA says no fix, RMC of the same second says valid: no position
    (1, "V", "N"),   # and the other way round
    (1, "A", "N"),   # NMEA 2.3 mode indicator N (data not valid) with status A
    (8, "A", "A"),
])
def test_no_position_while_the_receiver_says_it_has_none(quality: int, status: str, mode: str) -> None:
    (r,), _ = run(f"GPGGA,130711,{POS},{quality},05,1.2,545.4,M,46.9,M,,",
                  f"GPRMC,130711.00,{status},{POS},1.5,84.4,230394,,,{mode}")
    assert "latitude_deg" not in r and "longitude_deg" not in r and "altitude_m" not in r
    assert "speed_kn" not in r
    assert r["fix_quality"] == quality and r["satellites"] == 5


def test_dead_reckoning_is_published_when_configured() -> None:
    bodies = (f"GPGGA,130711,{POS},6,00,,545.4,M,46.9,M,,",
              f"GPRMC,130711,A,{POS},1.5,84.4,230394,,,E")
    (off,), _ = run(*bodies)
    assert "latitude_deg" not in off
    (on,), _ = run(*bodies, dead_reckoning=True)
    assert on["fix_quality"] == 6 and on["latitude_deg"] == pytest.approx(48.1173)


def test_one_reading_per_epoch_with_one_gga_rmc_per_constellation() -> None:
    epochs = []
    for t in ("130711", "130712", "130713", "130714"):
        epochs += [f"GPGGA,{t},{POS},1,08,0.9,545.4,M,46.9,M,,",
                   f"GLGGA,{t}.00,{POS},1,02,0.9,545.4,M,46.9,M,,",
                   f"GPRMC,{t}.00,A,{POS},1.5,84.4,230394,,,A",
                   f"GLRMC,{t},A,{POS},1.5,84.4,230394,,,A"]
    readings, d = run(*epochs)
    # GPS 8 + GLONASS 2: one reading per epoch, with every field, satellites summed.
    assert len(readings) == 4
    assert all(r["satellites"] == 10 and r["speed_kn"] == 1.5 for r in readings)
    assert [r["gps_time"] for r in readings] == [
        f"1994-03-23T13:07:{s}.00Z" for s in ("11", "12", "13", "14")]
    assert d.counters.get("late_sentences", 0) == 0
    # With a combined GN solution, its count is the receiver's (not GN + GP + GL).
    (r,), _ = run(f"GNGGA,130711,{POS},1,12,0.8,545.4,M,46.9,M,,",
                  f"GPGGA,130711,{POS},1,08,0.9,545.4,M,46.9,M,,",
                  f"GLGGA,130711,{POS},1,04,1.1,545.4,M,46.9,M,,")
    assert r["satellites"] == 12 and r["hdop"] == 0.8


def test_readings_are_not_held_back_once_the_pattern_is_known() -> None:
    d = NmeaDecoder()
    out = []
    for t in range(10, 15):
        out += d.feed(sentence(f"GNGGA,1307{t},{POS},1,08,0.9,545.4,M,46.9,M,,"))
        out += d.feed(sentence(f"GNRMC,1307{t},A,{POS},1.5,84.4,230394,,,A"))
    # The first two epochs teach the decoder the pattern (each is published when the next
    # one starts); from then on an epoch is published as soon as its last sentence arrives.
    assert len(out) == 5
    assert out[-1]["gps_time"] == "1994-03-23T13:07:14Z"


def test_same_second_written_two_ways_is_one_epoch() -> None:
    readings, _ = run(f"GPGGA,130711,{POS},1,08,0.9,545.4,M,46.9,M,,",
                      f"GPRMC,130711.00,A,{POS},1.5,84.4,230394,,,A")
    assert len(readings) == 1 and readings[0]["satellites"] == 8 and readings[0]["speed_kn"] == 1.5


def test_one_bad_field_does_not_cost_the_sentence() -> None:
    # Placeholder coordinates in a no-fix sentence: no position, but the fix status stays.
    (r,), d = run("GPGGA,130711,8960.000000,N,18060.000000,E,0,00,99.99,,M,,M,,",
                  "GPRMC,130711,V,8960.000000,N,18060.000000,E,,,230394,,,N")
    assert r == {"fix_quality": 0, "satellites": 0, "hdop": 99.99, "gps_time": "1994-03-23T13:07:11Z"}
    assert d.counters.get("malformed", 0) == 0
    # A junk date: the date is absent (and says so), the position is kept.
    (r,), _ = run(f"GPGGA,130711,{POS},1,08,0.9,545.4,M,46.9,M,,",
                  f"GPRMC,130711,A,{POS},1.5,84.4,310299,,,A")
    assert r["latitude_deg"] == pytest.approx(48.1173) and r["absent"] == ["gps_time"]
    assert "gps_time" not in r


def test_proprietary_and_encapsulated_sentences_are_ignored_not_malformed() -> None:
    d = NmeaDecoder()
    for line in (sentence("PUBX,00,130711.00,4807.038,N,01131.000,E,545.4,G3,2.1,2.0,0.0,0,0,0,1,1,8,0,0"),
                 b"$PMTK011,MTKGPS", sentence("PMTK001,604,3"),
                 sentence("PGRME,15.0,M,45.0,M,25.0,M"),
                 b"!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26"):
        assert d.feed(line) == []
    assert d.counters == {"ignored": 5}


def ubx(cls: int, msg: int, payload: bytes) -> bytes:
    body = bytes([cls, msg]) + len(payload).to_bytes(2, "little") + payload
    return b"\xb5\x62" + body + ubx_checksum(body)


def test_binary_frames_before_a_sentence_lose_nothing() -> None:
    """A u-blox port with UBX and NMEA enabled: frames right before `$` on the same line,
    payloads holding `$` and newlines, and noise; every sentence still decodes."""
    nav_pvt = ubx(0x01, 0x07, bytes(range(92)).replace(b"\x20", b"$") + b"\n$GPGGA,1*00\r\n")
    stream = b""
    for t in range(10, 20):
        stream += nav_pvt + sentence(f"GNGGA,1307{t},{POS},1,08,0.9,545.4,M,46.9,M,,") + b"\r\n"
        stream += b"\x00\xff\x13" + sentence(f"GNRMC,1307{t}.00,A,{POS},1.5,84.4,230394,,,A") + b"\r\n"
    framer, d = SentenceFramer(256), NmeaDecoder()
    out: list[dict[str, object]] = []
    for i in range(0, len(stream), 13):
        for s in framer.feed(stream[i:i + 13]):
            out += d.feed(s)
    out += d.flush()
    assert len(out) == 10 and all(r["satellites"] == 8 and r["speed_kn"] == 1.5 for r in out)
    assert framer.counters["binary_frames"] == 10
    assert d.counters == {"sentences": 20}


def test_decoding_resynchronises_on_the_next_start_not_the_next_newline() -> None:
    gga = sentence(f"GNGGA,130711,{POS},1,08,0.9,545.4,M,46.9,M,,")
    framer = SentenceFramer(82)
    # Overlong text, then a sentence on the same line; a sentence cut short by the next one.
    got = framer.feed(b"$GPTXT," + b"x" * 300 + gga + b"\r\n" + gga[:30] + gga + b"\r\n")
    assert got == [gga, gga]
    assert framer.counters["overlong_lines"] == 1 and framer.counters["truncated_sentences"] == 1
    # After a (re)open the first sentence is kept when it is whole; a tail is skipped.
    framer.resync()
    assert framer.feed(b"0.9,545.4,M,46.9,M,,*47\r\n" + gga + b"\r\n") == [gga]
    assert framer.buffered == 0


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
    fixes = []
    for t in ("123519", "123520", "123521"):
        gga = with_checksum(f"GPGGA,{t},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
        rmc = with_checksum(f"GPRMC,{t},A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
        assert d.feed(rmc) == []
        fixes.append(d.feed(gga))
    # The first two epochs show the receiver's pattern (one GPGGA: each is published when
    # the next starts); then each fix is complete at once on its GGA, no RMC is waited for.
    assert [len(f) for f in fixes] == [0, 1, 2]
    for fix in fixes[2]:
        assert set(fix) == {"latitude_deg", "longitude_deg", "altitude_m", "fix_quality",
                            "satellites", "hdop"}
    assert d.counters["ignored"] == 3
