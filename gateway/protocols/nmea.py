"""NMEA 0183: GGA, RMC, GNS, GLL, VTG and GSA from any talker (GP, GN, GL, GA, GB, BD, GQ, ...).

Sentence layout (NMEA 0183 v4.11 §5.3): `$TTSSS,f1,f2,...*HH<CR><LF>`, where
HH is the XOR of every character between `$` and `*` as two hex digits.
A sentence without a valid checksum is rejected: a GPS on a noisy UART that
loses a byte would otherwise publish a position kilometres away.

Fields used (NMEA 0183 v4.11 §6.3):
  GGA  time, lat, N/S, lon, E/W, quality, satellites, HDOP, altitude, M, ...
  RMC  time, status A/V, lat, N/S, lon, E/W, speed (kn), course (°true),
       date ddmmyy, magnetic variation, E/W[, mode (v2.3+)[, navigational status (v4.1+)]]
  GNS  time, lat, N/S, lon, E/W, mode per constellation (`AAN`), satellites, HDOP,
       altitude, geoid separation, age, station[, navigational status (v4.1+)]
  GLL  lat, N/S, lon, E/W, time, status A/V[, mode (v2.3+)]
  VTG  course (°true), T, course (°magnetic), M, speed, N (knots), speed, K (km/h)
       [, mode (v2.3+)]
  GSA  mode M/A, fix type 1-3, 12 satellite ids, PDOP, HDOP, VDOP[, system id (v4.11)]

The receiver's own "no fix" is respected. A position is published only when
the epoch's sentences say there is one and none says there is not:
  GGA quality 1-5 (GPS, DGPS, PPS, RTK fixed, RTK float) is a fix; 0 (none),
      7 (manual input) and 8 (simulator) are not; 6 (dead reckoning, an estimate
      without satellites) is not, unless `dead_reckoning` is set.
  RMC and GLL status A with a mode of A, D, F, P, R (or none, before v2.3) is a
      fix; status V, or mode N (no fix), M (manual), S (simulator), E (estimated,
      unless `dead_reckoning`) is not. NMEA 0183 v2.3 requires status V for
      every mode but A and D; receivers differ, so both fields are read.
  GNS is a fix when one constellation's mode is (`AAN` is, `NNN` and `ENN` are not).
  VTG mode as RMC's (no mode: VTG says nothing). GSA fix type 2 or 3 is, 1 is not.

One bad field does not cost the sentence: an undecodable field is ABSENT (the
reading lists it under `absent`) and the rest is kept. Proprietary sentences
(`$P...`, e.g. `$PUBX`, `$PMTK`) and encapsulated ones (`!AIVDM`) are ignored.

The catalog entry follows the protocol:
`driver: nmea` — a GPS receiver speaking NMEA 0183 on a serial port.
The decoder above takes plain arguments; only the entry reads the config.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.catalog.spec import DeviceSpec, LineStream
from gateway.config.model import SerialDevice
from gateway.config.schema import Field, field_validator
from gateway.config.types import Duration
from gateway.protocols.framer import SentenceFramer
from gateway.reading import ABSENT


class NmeaError(ValueError):
    """A sentence that is malformed or fails its checksum."""


class ChecksumError(NmeaError):
    pass


class Ignored(NmeaError):
    """A well-formed sentence the gateway does not use (proprietary, encapsulated)."""


def checksum(body: str | bytes) -> int:
    """XOR of the characters between `$` and `*` (pass only that part)."""
    data = body.encode("ascii") if isinstance(body, str) else body
    c = 0
    for b in data:
        c ^= b
    return c


def with_checksum(body: str) -> str:
    """`$body*HH` for a sentence body without `$`/`*` (used by the simulator)."""
    return f"${body}*{checksum(body):02X}"


@dataclass(frozen=True)
class Sentence:
    talker: str
    kind: str
    fields: tuple[str, ...]


def parse_sentence(line: bytes | str) -> Sentence:
    """Split and verify one sentence. Raises NmeaError / ChecksumError / Ignored."""
    data = line if isinstance(line, bytes) else line.encode("utf-8")
    start = max(data.rfind(b"$"), data.rfind(b"!"))  # noise before the start is tolerated
    if start < 0:
        raise NmeaError("no '$'")
    try:
        text = data[start:].decode("ascii").strip()
    except UnicodeDecodeError:
        raise NmeaError("not ASCII") from None
    address = text[1:].split(",", 1)[0].split("*", 1)[0]
    if text[0] == "!" or address.startswith("P"):
        # Checked before the checksum: some proprietary sentences (PMTK replies) have none.
        raise Ignored(f"{address}: encapsulated or proprietary")
    star = text.find("*")
    if star < 0:
        raise NmeaError("no checksum")
    body, given = text[1:star], text[star + 1:]
    if len(given) != 2:
        raise NmeaError(f"checksum must be two hex digits, got {given!r}")
    try:
        expected = int(given, 16)
    except ValueError:
        raise NmeaError(f"checksum is not hex: {given!r}") from None
    actual = checksum(body.encode("ascii"))
    if actual != expected:
        raise ChecksumError(f"checksum {given} but computed {actual:02X}")
    parts = body.split(",")
    if len(address) != 5 or not address.isalnum() or not address.isupper():
        raise NmeaError(f"bad address field {address!r}")
    return Sentence(address[:2], address[2:], tuple(parts[1:]))


def _coord(value: str, hemi: str, deg_digits: int, positive: str, negative: str) -> float | None:
    """ddmm.mmmm (lat) / dddmm.mmmm (lon) + hemisphere -> signed degrees."""
    if not value and not hemi:
        return None
    if hemi not in (positive, negative) or len(value) < deg_digits + 2:
        raise NmeaError(f"bad coordinate {value!r},{hemi!r}")
    if not value[:deg_digits].isdigit() or not value[deg_digits:deg_digits + 2].isdigit():
        raise NmeaError(f"bad coordinate {value!r}")
    try:
        deg = int(value[:deg_digits])
        minutes = float(value[deg_digits:])
    except ValueError:
        raise NmeaError(f"bad coordinate {value!r}") from None
    if not 0 <= minutes < 60:
        raise NmeaError(f"minutes out of range in {value!r}")  # e.g. a placeholder 8960.000
    out = deg + minutes / 60.0
    limit = 90 if deg_digits == 2 else 180
    if out > limit:
        raise NmeaError(f"coordinate out of range: {value!r}")
    return -out if hemi == negative else out


def _float(value: str, what: str) -> float | None:
    if value == "":
        return None
    try:
        f = float(value)
    except ValueError:
        raise NmeaError(f"bad {what} {value!r}") from None
    if not math.isfinite(f):
        raise NmeaError(f"bad {what} {value!r}")
    return f


def _int(value: str, what: str) -> int | None:
    if value == "":
        return None
    if not value.isdigit():
        raise NmeaError(f"bad {what} {value!r}")
    return int(value)


def _time(value: str) -> str | None:
    """hhmmss[.ss] -> 'hh:mm:ss[.ss]'."""
    if value == "":
        return None
    if len(value) < 6 or not value[:6].isdigit():
        raise NmeaError(f"bad time {value!r}")
    hh, mm, ss = int(value[0:2]), int(value[2:4]), int(value[4:6])
    if hh > 23 or mm > 59 or ss > 60:
        raise NmeaError(f"bad time {value!r}")
    frac = value[6:]
    if frac and (frac[0] != "." or not frac[1:].isdigit()):
        raise NmeaError(f"bad time {value!r}")
    return f"{value[0:2]}:{value[2:4]}:{value[4:6]}{frac}"


def seconds_of_day(text: str) -> float:
    """'hh:mm:ss[.ss]' -> seconds, so `130711` and `130711.00` are the same epoch."""
    return int(text[0:2]) * 3600 + int(text[3:5]) * 60 + float(text[6:])


def _date(value: str) -> str | None:
    """ddmmyy -> 'YYYY-MM-DD'. Two-digit years: 80-99 -> 19xx, else 20xx (GPS epoch 1980)."""
    if value == "":
        return None
    if len(value) != 6 or not value.isdigit():
        raise NmeaError(f"bad date {value!r}")
    dd, mm, yy = int(value[0:2]), int(value[2:4]), int(value[4:6])
    if not (1 <= mm <= 12 and 1 <= dd <= _DAYS[mm - 1] + (mm == 2 and yy % 4 == 0)):
        raise NmeaError(f"bad date {value!r}")
    year = 1900 + yy if yy >= 80 else 2000 + yy
    return f"{year:04d}-{mm:02d}-{dd:02d}"


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _need(s: Sentence, n: int) -> None:
    if len(s.fields) < n:
        raise NmeaError(f"{s.kind} has {len(s.fields)} fields, expected at least {n}")


def _field(out: dict[str, Any], key: str, parse: Any, *args: Any) -> Any:
    """Set out[key] from one field: absent if empty, ABSENT if undecodable."""
    try:
        value = parse(*args)
    except NmeaError:
        out[key] = ABSENT
        return ABSENT
    if value is not None:
        out[key] = value
    return value


def _position(out: dict[str, Any], f: tuple[str, ...], i: int) -> None:
    """lat, N/S, lon, E/W at fields i..i+3; both ABSENT if either is undecodable.
    `position` holds the pair, so an epoch takes both from the same sentence."""
    try:
        lat = _coord(f[i], f[i + 1], 2, "N", "S")
        lon = _coord(f[i + 2], f[i + 3], 3, "E", "W")
    except NmeaError:
        out["latitude_deg"] = out["longitude_deg"] = out["position"] = ABSENT
        return
    if lat is not None and lon is not None:
        out["latitude_deg"], out["longitude_deg"] = lat, lon
        out["position"] = (lat, lon)


#: GGA quality indicators that are a position fix (v4.11 §6.3 GGA note 2).
FIX_QUALITIES = frozenset({1, 2, 3, 4, 5})
DEAD_RECKONING_QUALITY = 6
#: RMC/GLL/GNS/VTG mode indicators that are a position fix (v2.3+): autonomous, differential,
#: float RTK, precise, RTK. E is estimated (dead reckoning); N, M, S are not a fix.
FIX_MODES = frozenset("ADFPR")
DEAD_RECKONING_MODE = "E"
#: A mode indicator as the GGA quality that names the same state, so a receiver sending
#: GNS instead of GGA still gives `fix_quality`.
MODE_QUALITY = {"N": 0, "A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}
#: GNS has one mode per constellation (`AAN`: GPS and GLONASS autonomous, Galileo none);
#: the solution is as good as its best one. Every fix mode ranks before E, M, S, N.
MODE_RANK = "RFPDAEMSN"
#: GSA fix types (v4.11 §6.3 GSA): 1 not available, 2 2D, 3 3D.
FIX_TYPES = frozenset({2, 3})
GSA_FIX_TYPES = frozenset({1, 2, 3})
KMH_PER_KN = 1.852  # one knot is one nautical mile (1852 m) per hour


def _quality_fix(quality: Any, dead_reckoning: bool) -> bool | None:
    """A GGA quality (or the quality of a GNS mode) as fix / no fix / unknown."""
    if quality is None or quality is ABSENT:
        return None
    return bool(quality in FIX_QUALITIES or (dead_reckoning and quality == DEAD_RECKONING_QUALITY))


def _mode_fix(mode: str, dead_reckoning: bool) -> bool:
    return mode in FIX_MODES or (dead_reckoning and mode == DEAD_RECKONING_MODE)


def _status_fix(status: str, mode: str, dead_reckoning: bool) -> bool | None:
    """RMC/GLL status A/V with the mode indicator ('' before v2.3). NMEA 0183 v2.3 requires
    status V for every mode but A and D; receivers differ, so both fields are read."""
    if status not in ("A", "V"):
        return None  # unreadable status: this sentence says nothing either way
    if status == "V":
        return False
    return mode == "" or _mode_fix(mode[0], dead_reckoning)


def _gns_quality(value: str) -> int | None:
    """GNS mode indicators, one per constellation -> the GGA quality of the best one."""
    if value == "":
        return None
    if not all(c in MODE_QUALITY for c in value):
        raise NmeaError(f"bad mode indicator {value!r}")
    return MODE_QUALITY[min(value, key=MODE_RANK.index)]


def _fix_type(value: str) -> int | None:
    t = _int(value, "fix type")
    if t is not None and t not in GSA_FIX_TYPES:
        raise NmeaError(f"bad fix type {value!r}")
    return t


def _speed_kmh(value: str) -> float | None:
    """A speed in km/h (VTG) as knots, the unit every reading carries."""
    kmh = _float(value, "speed")
    return None if kmh is None else kmh / KMH_PER_KN


def _timed(value: str) -> dict[str, Any]:
    t = _time(value)
    return {} if t is None else {"time": t}


def _fix_data(f: tuple[str, ...], quality: Any, out: dict[str, Any],
              dead_reckoning: bool) -> dict[str, Any]:
    """GGA and GNS from the mode/quality field on: the same layout (fields 1-4 position,
    6 satellites, 7 HDOP, 8 altitude)."""
    out["fix"] = fix = _quality_fix(quality, dead_reckoning)
    _field(out, "satellites", _int, f[6], "satellites")
    _field(out, "hdop", _float, f[7], "hdop")
    if fix:
        _position(out, f, 1)
        _field(out, "altitude_m", _float, f[8], "altitude")
    return out


def decode_gga(s: Sentence, dead_reckoning: bool = False) -> dict[str, Any]:
    """GGA: position fix. `fix` is True/False per the quality field (None if empty);
    the position keys are present only with a fix."""
    _need(s, 9)
    out = _timed(s.fields[0])
    quality = _field(out, "fix_quality", _int, s.fields[5], "fix quality")
    return _fix_data(s.fields, quality, out, dead_reckoning)


def decode_gns(s: Sentence, dead_reckoning: bool = False) -> dict[str, Any]:
    """GNS: the multi-constellation GGA (time, position, a mode per constellation,
    satellites, HDOP, altitude, ...[, navigational status (v4.1+)]). The modes give
    `fix_quality` as GGA would: `AAN` is 1 (autonomous), `NNN` 0 (no fix)."""
    _need(s, 9)
    out = _timed(s.fields[0])
    quality = _field(out, "fix_quality", _gns_quality, s.fields[5])
    return _fix_data(s.fields, quality, out, dead_reckoning)


def decode_rmc(s: Sentence, dead_reckoning: bool = False) -> dict[str, Any]:
    """RMC: recommended minimum (position, speed, course, date)."""
    _need(s, 9)
    f = s.fields
    out = _timed(f[0])
    _field(out, "date", _date, f[8])
    out["fix"] = fix = _status_fix(f[1], f[11] if len(f) > 11 else "", dead_reckoning)
    if fix:
        _position(out, f, 2)
        _field(out, "speed_kn", _float, f[6], "speed")
        _field(out, "course_deg", _float, f[7], "course")
    return out


def decode_gll(s: Sentence, dead_reckoning: bool = False) -> dict[str, Any]:
    """GLL: position, time, status A/V[, mode (v2.3+)] — the position of RMC, nothing else."""
    _need(s, 6)
    f = s.fields
    out = _timed(f[4])
    out["fix"] = fix = _status_fix(f[5], f[6] if len(f) > 6 else "", dead_reckoning)
    if fix:
        _position(out, f, 0)
    return out


def decode_vtg(s: Sentence, dead_reckoning: bool = False) -> dict[str, Any]:
    """VTG: course (true, magnetic), speed (knots, km/h)[, mode (v2.3+)]. No time."""
    _need(s, 8)
    f = s.fields
    mode = f[8] if len(f) > 8 else ""
    out: dict[str, Any] = {"fix": None if mode == "" else _mode_fix(mode[0], dead_reckoning)}
    if out["fix"] is not False:
        _field(out, "course_deg", _float, f[0], "course")
        if _field(out, "speed_kn", _float, f[4], "speed") is None:
            _field(out, "speed_kn", _speed_kmh, f[6])  # only km/h given
    return out


def decode_gsa(s: Sentence, dead_reckoning: bool = False) -> dict[str, Any]:
    """GSA: mode M/A, fix type 1-3, up to 12 satellites used, PDOP, HDOP, VDOP
    [, system id (v4.11)]. No time. `satellites` counts the listed ones."""
    _need(s, 17)
    f = s.fields
    out: dict[str, Any] = {}
    fix_type = _field(out, "fix_type", _fix_type, f[1])
    out["fix"] = None if fix_type is None or fix_type is ABSENT else fix_type in FIX_TYPES
    out["satellites"] = sum(1 for prn in f[2:14] if prn != "")
    for key, i in (("pdop", 14), ("hdop", 15), ("vdop", 16)):
        _field(out, key, _float, f[i], key)
    if len(f) > 17:
        _field(out, "system_id", _int, f[17], "system id")  # read, not published
    return out


DECODERS = {"GGA": decode_gga, "RMC": decode_rmc, "GNS": decode_gns, "GLL": decode_gll,
            "VTG": decode_vtg, "GSA": decode_gsa}
#: Sentences that carry the epoch's UTC time. VTG and GSA have none: they belong to the
#: epoch in progress (receivers send them after that epoch's RMC or GGA).
TIMED = frozenset({"GGA", "RMC", "GNS", "GLL"})
#: The keys a fix can carry from each sentence (gps_time needs RMC's date).
SENTENCE_KEYS: dict[str, tuple[str, ...]] = {
    "GGA": ("latitude_deg", "longitude_deg", "altitude_m", "fix_quality", "satellites", "hdop"),
    "RMC": ("latitude_deg", "longitude_deg", "speed_kn", "course_deg", "gps_time"),
    "GNS": ("latitude_deg", "longitude_deg", "altitude_m", "fix_quality", "satellites", "hdop"),
    "GLL": ("latitude_deg", "longitude_deg"),
    "VTG": ("speed_kn", "course_deg"),
    "GSA": ("fix_type", "satellites", "hdop", "pdop", "vdop"),
}
#: Where several sentences of an epoch give a key, the first of these with a usable
#: value wins. They should agree; the richer sentence comes first: GGA before GNS (the
#: same fields, and GGA is what a GGA+RMC receiver always published), RMC before GLL and
#: VTG (RMC also has the date), GGA/GNS before GSA (GSA lists at most 12 satellites).
PRECEDENCE: dict[str, tuple[str, ...]] = {
    "fix_quality": ("GGA", "GNS"),
    "fix_type": ("GSA",),
    "position": ("GGA", "GNS", "RMC", "GLL"),
    "altitude_m": ("GGA", "GNS"),
    "satellites": ("GGA", "GNS", "GSA"),
    "hdop": ("GGA", "GNS", "GSA"),
    "pdop": ("GSA",),
    "vdop": ("GSA",),
    "speed_kn": ("RMC", "VTG"),
    "course_deg": ("RMC", "VTG"),
}
#: The combined-solution talker: its sentences win over per-constellation ones (GP, GL, ...).
COMBINED = "GN"
#: An epoch holds at most this many sentences (a receiver that sends no time, or the same
#: time forever, would otherwise grow it without end): then it is finished.
MAX_EPOCH_SENTENCES = 256

Part = tuple[str, str, dict[str, Any]]


@dataclass
class NmeaDecoder:
    """Turns a stream of sentences into one fix per epoch, counting what it rejects.

    An epoch is every GGA/RMC/GNS/GLL with the same UTC time (compared as a number,
    so `130711` and `130711.00` are one epoch), from any talker, with the VTG and
    GSA sentences that follow them. It is complete when the next epoch starts or,
    once the receiver's pattern is known (two epochs in a row brought the same
    sentences: talker + kind, how many of each), as soon as that pattern has
    arrived, so readings are not held back one epoch. A sentence arriving for an
    epoch already published is counted (`late_sentences`) and waited for from then
    on, never published twice.
    """

    counters: dict[str, int] = field(default_factory=dict)
    #: The kinds the receiver is configured to send (`sentences:`); others are ignored,
    #: so a fix carries only the keys they give.
    sentences: frozenset[str] = frozenset(DECODERS)
    #: Publish the position of a dead-reckoning estimate (GGA quality 6, mode E).
    dead_reckoning: bool = False
    #: Publish an epoch as soon as the learned pattern is complete (else: when the next
    #: epoch starts). A pattern learned while one talker's sentence was lost twice in a
    #: row costs that sentence once, when it comes back (`late_sentences`).
    early: bool = True
    _epoch: float | None = None
    _parts: list[Part] = field(default_factory=list)
    #: The (talker, kind) counts of every epoch, once two epochs in a row agreed on them.
    _expected: Counter[tuple[str, str]] = field(default_factory=Counter)
    _previous: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The epoch published last: its time and what it was made of (late sentences too).
    _done: float | None = None
    _done_seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def feed(self, line: bytes | str) -> list[dict[str, Any]]:
        """One sentence in; zero or more completed fixes out."""
        try:
            s = parse_sentence(line)
        except ChecksumError:
            self._count("bad_checksum")
            return []
        except Ignored:
            self._count("ignored")
            return []
        except NmeaError:
            self._count("malformed")
            return []
        decoder = DECODERS.get(s.kind) if s.kind in self.sentences else None
        if decoder is None:
            self._count("ignored")
            return []
        try:
            values = decoder(s, self.dead_reckoning)
        except NmeaError:
            self._count("malformed")  # too few fields, or no usable time: cannot be placed
            return []
        self._count("sentences")
        if any(v is ABSENT for v in values.values()):
            self._count("bad_fields")
        key = (s.talker, s.kind)
        out: list[dict[str, Any]] = []
        if s.kind not in TIMED:
            if not self._parts and self._expected:
                # Its epoch looked complete and was published: the pattern has more.
                self._late(key)
                return out
            # The epoch in progress; before the first timed sentence, the one that follows.
        else:
            text = values.get("time")
            epoch = None if text is None else seconds_of_day(text)
            if epoch is not None and epoch == self._done:
                self._late(key)
                return out
            if self._parts and epoch != self._epoch and any(k in TIMED for _, k, _ in self._parts):
                seen = self._seen()
                if not self._expected and seen == self._previous:
                    self._expected = seen  # the same sentences twice in a row: the pattern
                self._previous = seen
                out += self._finish()
            self._epoch = epoch
        self._parts.append((s.talker, s.kind, values))
        if len(self._parts) >= MAX_EPOCH_SENTENCES or (
                self.early and self._expected and self._seen() >= self._expected):
            out += self._finish()
        return out

    def flush(self) -> list[dict[str, Any]]:
        """The epoch in progress, if any (end of input)."""
        return self._finish()

    def _seen(self) -> Counter[tuple[str, str]]:
        return Counter((t, k) for t, k, _ in self._parts)

    def _late(self, key: tuple[str, str]) -> None:
        self._count("late_sentences")
        self._done_seen[key] += 1
        if self._expected:  # the pattern grew: wait for it too
            self._expected[key] = max(self._expected[key], self._done_seen[key])

    def _finish(self) -> list[dict[str, Any]]:
        if not self._parts:
            return []
        self._done_seen = self._seen()
        parts, self._parts = self._parts, []
        self._done = self._epoch
        if not any(k in TIMED for _, k, _ in parts):
            # Only VTG/GSA, no sentence with a time (or a position) to place them in.
            self._count("unplaced_sentences", len(parts))
            return []
        return [merge_epoch(parts)]


def _primary(parts: list[Part], kind: str) -> dict[str, Any] | None:
    """The combined (GN) sentence of a kind if the epoch has one, else the first."""
    found = [(t, v) for t, k, v in parts if k == kind]
    for talker, values in found:
        if talker == COMBINED:
            return values
    return found[0][1] if found else None


def _satellites(parts: list[Part], kind: str) -> Any:
    """Satellites used by the epoch's GGAs (or GNSs, GSAs): the combined talker's if it
    sent this kind, else the sum over the constellations' (GPGGA 8 + GLGGA 2 use 10).
    A u-blox receiver sends one GNGSA per constellation: those are summed too."""
    found = [(t, v.get("satellites")) for t, k, v in parts if k == kind]
    if any(t == COMBINED for t, _ in found):
        found = [(t, n) for t, n in found if t == COMBINED]
    known = [n for _, n in found if n is not None]
    if not known:
        return None
    return ABSENT if ABSENT in known else sum(known)


def _best_fix_type(parts: list[Part]) -> Any:
    """The best GSA fix type of the epoch: a constellation without satellites in use
    may say 1 (no fix) while the solution, from the others, is 3D."""
    types = [v["fix_type"] for _, k, v in parts if k == "GSA" and "fix_type" in v]
    known = [t for t in types if t is not ABSENT]
    return max(known) if known else (ABSENT if types else None)


def _pick(key: str, sources: list[dict[str, Any] | None]) -> Any:
    """The first usable value of `key`; ABSENT if the only ones there were undecodable."""
    absent = False
    for values in sources:
        if values is not None and key in values:
            if values[key] is not ABSENT:
                return values[key]
            absent = True
    return ABSENT if absent else None


def _view(parts: list[Part], kind: str) -> dict[str, Any] | None:
    """What the epoch's sentences of one kind say: the primary one's values, with the
    satellites of all of them (`_satellites`) and, for GSA, the best fix type."""
    primary = _primary(parts, kind)
    if primary is None:
        return None
    view = dict(primary)
    view.pop("satellites", None)
    satellites = _satellites(parts, kind)
    if satellites is not None:
        view["satellites"] = satellites
    if kind == "GSA":
        view.pop("fix_type", None)
        fix_type = _best_fix_type(parts)
        if fix_type is not None:
            view["fix_type"] = fix_type
        view["fix"] = fix_type in FIX_TYPES if isinstance(fix_type, int) else None
    return view


def merge_epoch(parts: list[Part]) -> dict[str, Any]:
    """One reading from an epoch's sentences (any talkers).

    Each kind speaks through its combined GN sentence when the epoch has one, else
    its first (`_view`); across kinds, PRECEDENCE says which wins. The position (and
    altitude, speed, course) is published only when the receiver says it has a fix
    and nothing in the epoch says it has not (e.g. GGA quality 0 with RMC status A,
    or GSA fix type 1: no position).
    """
    views = {kind: _view(parts, kind) for kind in DECODERS}
    said = [v["fix"] for v in views.values() if v is not None and v["fix"] is not None]
    fix = bool(said) and all(said)
    values: dict[str, Any] = {}
    for key, kinds in PRECEDENCE.items():
        if key in ("position", "altitude_m", "speed_kn", "course_deg") and not fix:
            continue
        value = _pick(key, [views[k] for k in kinds])
        if key != "position":
            values[key] = value
        elif value is not None:
            values["latitude_deg"], values["longitude_deg"] = (
                (ABSENT, ABSENT) if value is ABSENT else value)
    rmc = views["RMC"]
    if rmc is not None and "date" in rmc and "time" in rmc:
        date = rmc["date"]
        values["gps_time"] = ABSENT if date is ABSENT else f"{date}T{rmc['time']}Z"
    return {k: values[k] for k in KEY_ORDER if values.get(k) is not None}


#: The order of a reading's keys (what `watch` and the README show).
KEY_ORDER = ("fix_quality", "fix_type", "latitude_deg", "longitude_deg", "altitude_m",
             "satellites", "hdop", "pdop", "vdop", "speed_kn", "course_deg", "gps_time")


# -- the catalog entry ------------------------------------------------------------

class NmeaConfig(SerialDevice):
    driver: Literal["nmea"]
    interval: Duration | None = Field(  # type: ignore[assignment]
        default=None,
        description="Publish the latest fix at most this often; absent: every fix.",
    )
    max_line: int = Field(
        default=256, ge=82, le=65536,
        description="Longest sentence kept (NMEA allows 82 characters); longer ones are dropped.",
    )
    silence_timeout: Duration = Field(
        default=10.0, description="No valid sentence for this long marks the device failing.",
    )
    sentences: list[Literal["GGA", "RMC", "GNS", "GLL", "VTG", "GSA"]] = Field(
        default=["GGA", "RMC", "GNS", "GLL", "VTG", "GSA"], min_length=1,
        description="Sentences the receiver sends: GGA or GNS (position, altitude, fix quality, "
        "satellites, HDOP), RMC (position, speed, course, UTC date and time), GLL (position), "
        "VTG (speed, course), GSA (fix type, satellites, PDOP, HDOP, VDOP). Others are ignored; "
        "list only what the receiver sends, so Home Assistant announces only what it gets.",
    )
    dead_reckoning: bool = Field(
        default=False,
        description="Publish the position of a dead-reckoning estimate (GGA quality 6, mode E).",
    )

    @field_validator("sentences")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each sentence at most once")
        if not TIMED & set(v):
            raise ValueError("needs GGA, RMC, GNS or GLL (VTG and GSA carry no time)")
        return v


def _make_stream(cfg: NmeaConfig, counters: dict[str, int]) -> LineStream:
    decoder = NmeaDecoder(counters=counters, sentences=frozenset(cfg.sentences),
                          dead_reckoning=cfg.dead_reckoning)
    # Sentences are framed from `$`: UBX frames and noise on the port are skipped.
    return LineStream(decode=decoder.feed, interval=cfg.interval, max_line=cfg.max_line,
                      silence_timeout=cfg.silence_timeout, framer=SentenceFramer(cfg.max_line))


def _publishes(cfg: NmeaConfig) -> tuple[str, ...]:
    keys = [k for s in cfg.sentences for k in SENTENCE_KEYS[s]]
    return tuple(k for k in SPEC.quantities if k in keys)


SPEC = DeviceSpec(
    driver="nmea",
    summary="GPS receiver (NMEA 0183 GGA/RMC/GNS/GLL/VTG/GSA)",
    kind="serial",
    config=NmeaConfig,
    quantities=("latitude_deg", "longitude_deg", "altitude_m", "fix_quality", "fix_type",
                "satellites", "hdop", "pdop", "vdop", "speed_kn", "course_deg", "gps_time"),
    make_stream=_make_stream,
    reference="NMEA 0183 v4.11",
    model="NMEA 0183 GPS receiver",
    publishes=_publishes,
)
