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
    decode_gll,
    decode_gns,
    decode_gsa,
    decode_rmc,
    decode_vtg,
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


# -- GNS, GLL, VTG, GSA ------------------------------------------------------------
# Published examples: gpsinformation.org "NMEA data" (the classic GLL, VTG, GSA lines) and
# the SiRF NMEA Reference Manual (rev 1.3, GLL/GSA/VTG examples; its VTG has a blank
# magnetic course written as a space). Their checksums are the published ones.
GLL_CLASSIC = "$GPGLL,4916.45,N,12311.12,W,225444,A,*1D"
GLL_SIRF = "$GPGLL,3723.2475,N,12158.3416,W,161229.487,A,A*41"
VTG_CLASSIC = "$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48"
VTG_SIRF = "$GPVTG,309.62,T, ,M,0.13,N,0.2,K,A*23"
GSA_CLASSIC = "$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39"
GSA_SIRF = "$GPGSA,A,3,07,02,26,27,09,04,15,,,,,,1.8,1.0,1.5*33"


def test_published_gll_vtg_gsa_examples() -> None:
    for s in (GLL_CLASSIC, GLL_SIRF, VTG_CLASSIC, VTG_SIRF, GSA_CLASSIC, GSA_SIRF):
        assert xor(s[1:s.index("*")]) == int(s[-2:], 16)
    v = decode_gll(parse_sentence(GLL_CLASSIC))
    assert v["fix"] is True and v["time"] == "22:54:44"  # no mode field value: status decides
    assert v["latitude_deg"] == pytest.approx(49 + 16.45 / 60, abs=1e-9)
    assert v["longitude_deg"] == pytest.approx(-(123 + 11.12 / 60), abs=1e-9)
    v = decode_gll(parse_sentence(GLL_SIRF))
    assert v["fix"] is True and v["time"] == "16:12:29.487"
    assert v["latitude_deg"] == pytest.approx(37 + 23.2475 / 60, abs=1e-9)
    v = decode_vtg(parse_sentence(VTG_CLASSIC))
    assert v == {"fix": None, "course_deg": 54.7, "speed_kn": 5.5}  # before v2.3: no mode
    v = decode_vtg(parse_sentence(VTG_SIRF))
    assert v == {"fix": True, "course_deg": 309.62, "speed_kn": 0.13}
    v = decode_gsa(parse_sentence(GSA_CLASSIC))
    assert v == {"fix": True, "fix_type": 3, "satellites": 5, "pdop": 2.5, "hdop": 1.3,
                 "vdop": 2.1}
    v = decode_gsa(parse_sentence(GSA_SIRF))
    assert (v["fix_type"], v["satellites"], v["pdop"], v["hdop"], v["vdop"]) == (3, 7, 1.8, 1.0, 1.5)


def test_gns_modes_per_constellation() -> None:
    def gns(mode: str, dead_reckoning: bool = False) -> dict[str, object]:
        return decode_gns(parse_sentence(sentence(
            f"GNGNS,014035.00,4332.69262,S,17235.48549,E,{mode},13,0.9,25.63,11.24,,,V")),
            dead_reckoning)
    v = gns("AAN")  # GPS and GLONASS autonomous, Galileo no fix: a fix
    assert v["fix"] is True and v["fix_quality"] == 1 and v["time"] == "01:40:35.00"
    assert v["latitude_deg"] == pytest.approx(-(43 + 32.69262 / 60), abs=1e-9)
    assert v["longitude_deg"] == pytest.approx(172 + 35.48549 / 60, abs=1e-9)
    assert (v["satellites"], v["hdop"], v["altitude_m"]) == (13, 0.9, 25.63)
    assert gns("RR")["fix_quality"] == 4 and gns("FN")["fix_quality"] == 5
    assert gns("DA")["fix_quality"] == 2 and gns("P")["fix_quality"] == 3
    for mode, quality in (("NNN", 0), ("ENN", 6), ("MN", 7), ("SS", 8)):
        v = gns(mode)
        assert v["fix"] is False and v["fix_quality"] == quality
        assert "latitude_deg" not in v and "altitude_m" not in v
    assert gns("ENN", dead_reckoning=True)["latitude_deg"] == pytest.approx(-43.5448770)
    bad = gns("AX")  # an unknown mode letter: the quality is absent, the sentence says nothing
    assert bad["fix_quality"] is ABSENT and bad["fix"] is None and bad["satellites"] == 13


def test_vtg_speed_in_kmh_only_is_converted_to_knots() -> None:
    v = decode_vtg(parse_sentence(sentence("GPVTG,12.5,T,,M,,N,18.52,K,A")))
    assert v["speed_kn"] == pytest.approx(10.0) and v["course_deg"] == 12.5
    v = decode_vtg(parse_sentence(sentence("GPVTG,12.5,T,,M,,N,,K,N")))
    assert v == {"fix": False}  # mode N: the speed and course are not valid


GNS_FIX = f"GNGNS,130711.00,{POS},AAN,12,0.8,545.4,46.9,,,V"


@pytest.mark.parametrize("bodies", [
    # GLL status V, or a mode that is no fix (N, E without dead_reckoning, S, M), with VTG.
    [f"GPGLL,{POS},130711,V,N", "GPVTG,84.4,T,,M,1.5,N,2.8,K,N"],
    [f"GPGLL,{POS},130711,A,N", "GPVTG,84.4,T,,M,1.5,N,2.8,K,A"],
    [f"GPGLL,{POS},130711,A,E", "GPVTG,84.4,T,,M,1.5,N,2.8,K,E"],
    [f"GPGLL,{POS},130711,A,S", "GPVTG,84.4,T,,M,1.5,N,2.8,K,S"],
    [f"GPGLL,{POS},130711,V,M"],
    # GNS with every constellation N, or only an estimate.
    [f"GNGNS,130711.00,{POS},NNN,12,0.8,545.4,46.9,,,V"],
    [f"GNGNS,130711.00,{POS},ENN,12,0.8,545.4,46.9,,,V"],
    # GSA fix type 1 beside a GGA/GNS/GLL that claims a fix: the epoch has none.
    [f"GPGGA,130711,{POS},1,05,1.2,545.4,M,46.9,M,,", "GPGSA,A,1,,,,,,,,,,,,,99.9,99.9,99.9"],
    [GNS_FIX, "GNGSA,A,1,,,,,,,,,,,,,99.9,99.9,99.9,1"],
    [f"GPGLL,{POS},130711,A,A", "GPGSA,A,1,,,,,,,,,,,,,99.9,99.9,99.9"],
    # VTG mode N beside a GGA and RMC that say fix.
    [f"GPGGA,130711,{POS},1,05,1.2,545.4,M,46.9,M,,",
     f"GPRMC,130711,A,{POS},1.5,84.4,230394,,,A", "GPVTG,84.4,T,,M,1.5,N,2.8,K,N"],
    # GGA says fix, GNS of the same second says none (and the other way round).
    [f"GPGGA,130711,{POS},1,05,1.2,545.4,M,46.9,M,,", GNS_FIX.replace("AAN", "NNN")],
    [f"GPGGA,130711,{POS},0,05,1.2,545.4,M,46.9,M,,", GNS_FIX],
])
def test_no_position_from_gll_gns_vtg_gsa_while_the_receiver_says_none(bodies: list[str]) -> None:
    (r,), d = run(*bodies)
    for key in ("latitude_deg", "longitude_deg", "altitude_m", "speed_kn", "course_deg"):
        assert key not in r, (key, r)
    assert d.counters["sentences"] == len(bodies)
    if any("GSA" in b for b in bodies):
        assert r["fix_type"] == 1
    if any(",NNN," in b or ",ENN," in b for b in bodies) and not any("GGA" in b for b in bodies):
        assert r["fix_quality"] in (0, 6)


def ublox_gns_epoch(t: str) -> list[str]:
    """A u-blox receiver in NMEA 4.11 mode set to GNS + GSA + VTG: one GNGSA per
    constellation (system id 1 GPS, 2 GLONASS), each listing its own satellites."""
    return [f"GNGNS,{t}.00,{POS},AAN,08,0.9,545.4,46.9,,,V",
            "GNVTG,84.4,T,,M,1.5,N,2.8,K,A",
            "GNGSA,A,3,02,05,13,15,18,23,,,,,,,1.6,0.9,1.3,1",
            "GNGSA,A,3,71,72,,,,,,,,,,,1.6,0.9,1.3,2"]


def test_a_gns_only_receiver_publishes_every_field() -> None:
    epochs = [b for t in ("130711", "130712", "130713", "130714") for b in ublox_gns_epoch(t)]
    readings, d = run(*epochs)
    assert len(readings) == 4 and d.counters.get("late_sentences", 0) == 0
    for r in readings:
        assert r == {"fix_quality": 1, "fix_type": 3, "latitude_deg": pytest.approx(48.1173),
                     "longitude_deg": pytest.approx(11.516667), "altitude_m": 545.4,
                     "satellites": 8, "hdop": 0.9, "pdop": 1.6, "vdop": 1.3, "speed_kn": 1.5,
                     "course_deg": 84.4}
    # No GNS: the satellites come from the two GSAs (6 GPS + 2 GLONASS), as from GGAs.
    gsa_only = [b for t in ("130711", "130712") for b in ublox_gns_epoch(t)
                if "GNS" not in b]
    readings, d = run(f"GPGLL,{POS},130711,A,A", *gsa_only[:3], f"GPGLL,{POS},130712,A,A",
                      *gsa_only[3:])
    assert [r["satellites"] for r in readings] == [8, 8]


def test_a_gll_and_vtg_only_receiver_publishes_position_speed_and_course() -> None:
    epochs = []
    for t in ("130711", "130712", "130713", "130714", "130715"):
        epochs += [f"GPGLL,{POS},{t},A,A", "GPVTG,84.4,T,,M,1.5,N,2.8,K,A"]
    readings, d = run(*epochs)
    assert len(readings) == 5 and d.counters == {"sentences": 10}
    for r in readings:
        assert r == {"latitude_deg": pytest.approx(48.1173),
                     "longitude_deg": pytest.approx(11.516667), "speed_kn": 1.5,
                     "course_deg": 84.4}


def test_readings_come_as_soon_as_the_gll_vtg_pattern_is_complete() -> None:
    d = NmeaDecoder()
    published = []
    for t in range(10, 16):
        published.append(len(d.feed(sentence(f"GPGLL,{POS},1307{t},A,A"))))
        published.append(len(d.feed(sentence("GPVTG,84.4,T,,M,1.5,N,2.8,K,A"))))
    # GLL starts an epoch (publishing the one before) until the pattern is known; then
    # each epoch is out on its VTG, the last sentence of the pattern.
    assert published == [0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]


def test_which_sentence_wins_when_several_give_a_key() -> None:
    gga = f"GPGGA,130711,{POS},2,07,1.1,500.0,M,46.9,M,,"
    gns = "GNGNS,130711,4807.000,N,01131.000,E,AA,12,0.8,600.0,46.9,,,V"
    rmc = f"GPRMC,130711,A,{POS},1.5,84.4,230394,,,A"
    gll = "GPGLL,4800.000,N,01100.000,E,130711,A,A"
    vtg = "GPVTG,90.0,T,,M,3.0,N,5.6,K,A"
    gsa = "GPGSA,A,3,01,02,03,,,,,,,,,,2.0,1.5,1.2"
    (r,), _ = run(gns, gga, gll, rmc, vtg, gsa)
    # GGA over GNS (position, quality, satellites, HDOP, altitude); RMC over VTG.
    assert (r["fix_quality"], r["satellites"], r["hdop"], r["altitude_m"]) == (2, 7, 1.1, 500.0)
    assert r["latitude_deg"] == pytest.approx(48.1173)
    assert (r["speed_kn"], r["course_deg"], r["fix_type"], r["pdop"]) == (1.5, 84.4, 3, 2.0)
    # Without GGA: GNS; without RMC: GLL's position and VTG's speed and course.
    (r,), _ = run(gns, gll, vtg, gsa)
    assert (r["fix_quality"], r["satellites"], r["hdop"], r["altitude_m"]) == (1, 12, 0.8, 600.0)
    assert r["latitude_deg"] == pytest.approx(48 + 7 / 60)
    (r,), _ = run(gll, vtg, gsa)
    assert r["latitude_deg"] == 48.0 and (r["speed_kn"], r["course_deg"]) == (3.0, 90.0)
    assert (r["satellites"], r["hdop"]) == (3, 1.5)  # from GSA, with no GGA or GNS
    # A field the winner left empty (or could not decode) comes from the next one.
    (r,), _ = run(f"GPGGA,130711,{POS},1,07,,,M,46.9,M,,", gns,
                  f"GPRMC,130711,A,{POS},,84.4,230394,,,A", vtg)
    assert (r["hdop"], r["altitude_m"], r["speed_kn"]) == (0.8, 600.0, 3.0)
    (r,), _ = run(f"GPGGA,130711,{POS},1,07,1.1,5x0.0,M,46.9,M,,", gns)
    assert r["altitude_m"] == 600.0 and "absent" not in r


def test_satellites_of_several_gns_follow_the_gga_rule() -> None:
    (r,), _ = run(f"GPGNS,130711,{POS},A,08,0.9,545.4,46.9,,,V",
                  f"GLGNS,130711,{POS},A,02,1.1,545.4,46.9,,,V")
    assert r["satellites"] == 10 and r["hdop"] == 0.9  # summed; the rest from the first
    (r,), _ = run(f"GNGNS,130711,{POS},AA,12,0.8,545.4,46.9,,,V",
                  f"GPGNS,130711,{POS},A,08,0.9,545.4,46.9,,,V",
                  f"GLGNS,130711,{POS},A,04,1.1,545.4,46.9,,,V")
    assert r["satellites"] == 12 and r["hdop"] == 0.8  # the combined solution's


def test_the_best_gsa_fix_type_of_an_epoch_counts() -> None:
    (r,), _ = run(f"GPGGA,130711,{POS},1,05,1.2,545.4,M,46.9,M,,",
                  "GLGSA,A,1,,,,,,,,,,,,,1.6,0.9,1.3",  # GLONASS: none in use
                  "GPGSA,A,3,02,05,13,15,18,,,,,,,,1.6,0.9,1.3")
    assert r["fix_type"] == 3 and r["latitude_deg"] == pytest.approx(48.1173)


def test_one_bad_field_of_gll_vtg_gsa_gns_costs_only_that_field() -> None:
    (r,), d = run(f"GNGNS,130711,{POS},AA,1x,0.8,545.4,46.9,,,V",
                  "GNVTG,84.4,T,,M,1.5.,N,,K,A",
                  "GNGSA,A,3,01,02,,,,,,,,,,,2.x,1.0,1.5,1",
                  "GNGSA,A,7,03,,,,,,,,,,,,2.0,1.0,1.5,2")
    assert r["fix_quality"] == 1 and r["latitude_deg"] == pytest.approx(48.1173)
    assert r["fix_type"] == 3 and r["course_deg"] == 84.4 and r["vdop"] == 1.5
    assert r["satellites"] == 3  # GNS's did not decode: the next source, the GSAs (2 + 1)
    assert r["absent"] == ["pdop", "speed_kn"]
    assert d.counters["bad_fields"] == 4
    (r,), _ = run("GPGLL,4860.000,N,01131.000,E,130711,A,A")  # 60 minutes
    assert r == {"absent": ["latitude_deg", "longitude_deg"]}


def test_vtg_and_gsa_belong_to_the_epoch_in_progress() -> None:
    d = NmeaDecoder()
    # At the start the port may open mid-epoch: sentences without time wait for the next
    # one with a time, and join its epoch.
    out = d.feed(sentence("GPGSA,A,3,01,02,03,,,,,,,,,,2.0,1.5,1.2"))
    out += d.feed(sentence("GPVTG,90.0,T,,M,3.0,N,5.6,K,A"))
    for t in range(10, 14):
        out += d.feed(sentence(f"GPGGA,1307{t},{POS},1,05,1.2,545.4,M,46.9,M,,"))
        out += d.feed(sentence("GPVTG,90.0,T,,M,3.0,N,5.6,K,A"))
    # The pattern (GGA, VTG) is known after two epochs; a second VTG after the epoch was
    # published is late: counted, never a second reading, and waited for from then on.
    out += d.feed(sentence("GPVTG,91.0,T,,M,3.0,N,5.6,K,A"))
    assert d.counters["late_sentences"] == 1
    out += d.feed(sentence(f"GPGGA,130714,{POS},1,05,1.2,545.4,M,46.9,M,,"))
    out += d.feed(sentence("GPVTG,90.0,T,,M,3.0,N,5.6,K,A"))
    assert len(out) == 4  # 130714 waits for its second VTG (or the next epoch)
    out += d.flush()
    assert len(out) == 5 and all(r["speed_kn"] == 3.0 and r["fix_type"] == 3 for r in out[:1])
    assert out[0]["satellites"] == 5  # GGA's count wins over the GSA's 3
    # Only sentences without a time, never placed in an epoch: counted, not published.
    d = NmeaDecoder()
    assert d.feed(sentence("GPVTG,90.0,T,,M,3.0,N,5.6,K,A")) == [] and d.flush() == []
    assert d.counters["unplaced_sentences"] == 1


def test_sentences_need_one_with_a_time() -> None:
    from gateway.config.loader import parse_config

    with pytest.raises(Exception, match="needs GGA, RMC, GNS or GLL"):
        parse_config("gateway: {id: g}\ndevices:\n  - {name: d, driver: nmea, "
                     "port: /dev/ttyUSB0, sentences: [VTG, GSA]}\n")
