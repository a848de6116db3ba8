"""NMEA 0183: GGA and RMC sentences from any talker (GP, GN, GL, GA, GB, BD, GQ, ...).

Sentence layout (NMEA 0183 v4.11 §5.3): `$TTSSS,f1,f2,...*HH<CR><LF>`, where
HH is the XOR of every character between `$` and `*` as two hex digits.
A sentence without a valid checksum is rejected: a GPS on a noisy UART that
loses a byte would otherwise publish a position kilometres away.

Fields used (NMEA 0183 v4.11 §6.3):
  GGA  time, lat, N/S, lon, E/W, quality, satellites, HDOP, altitude, M, ...
  RMC  time, status A/V, lat, N/S, lon, E/W, speed (kn), course (°true),
       date ddmmyy, magnetic variation, E/W[, mode (v2.3+)[, navigational status (v4.1+)]]

The receiver's own "no fix" is respected. A position is published only when
the epoch's sentences say there is one and none says there is not:
  GGA quality 1-5 (GPS, DGPS, PPS, RTK fixed, RTK float) is a fix; 0 (none),
      7 (manual input) and 8 (simulator) are not; 6 (dead reckoning, an estimate
      without satellites) is not, unless `dead_reckoning` is set.
  RMC status A with a mode of A, D, F, P, R (or none, before v2.3) is a fix;
      status V, or mode N (no fix), M (manual), S (simulator), E (estimated,
      unless `dead_reckoning`) is not. NMEA 0183 v2.3 requires status V for
      every mode but A and D; receivers differ, so both fields are read.

One bad field does not cost the sentence: an undecodable field is ABSENT (the
reading lists it under `absent`) and the rest is kept. Proprietary sentences
(`$P...`, e.g. `$PUBX`, `$PMTK`) and encapsulated ones (`!AIVDM`) are ignored.

The catalog entry follows the protocol:
`driver: nmea` — a GPS receiver speaking NMEA 0183 (GGA and/or RMC) on a serial port.
The decoder above takes plain arguments; only the entry reads the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.catalog.spec import DeviceSpec, LineStream
from gateway.config.model import SerialDevice
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
    """lat, N/S, lon, E/W at fields i..i+3; both ABSENT if either is undecodable."""
    try:
        lat = _coord(f[i], f[i + 1], 2, "N", "S")
        lon = _coord(f[i + 2], f[i + 3], 3, "E", "W")
    except NmeaError:
        out["latitude_deg"] = out["longitude_deg"] = ABSENT
        return
    if lat is not None and lon is not None:
        out["latitude_deg"], out["longitude_deg"] = lat, lon


#: GGA quality indicators that are a position fix (v4.11 §6.3 GGA note 2).
FIX_QUALITIES = frozenset({1, 2, 3, 4, 5})
DEAD_RECKONING_QUALITY = 6
#: RMC/GLL/GNS mode indicators that are a position fix (v2.3+): autonomous, differential,
#: float RTK, precise, RTK. E is estimated (dead reckoning); N, M, S are not a fix.
FIX_MODES = frozenset("ADFPR")
DEAD_RECKONING_MODE = "E"


def decode_gga(s: Sentence, dead_reckoning: bool = False) -> dict[str, Any]:
    """GGA: position fix. `fix` is True/False per the quality field (None if empty);
    the position keys are present only with a fix."""
    _need(s, 9)
    f = s.fields
    t = _time(f[0])
    out: dict[str, Any] = {} if t is None else {"time": t}
    quality = _field(out, "fix_quality", _int, f[5], "fix quality")
    fix = None if quality is None or quality is ABSENT else (
        quality in FIX_QUALITIES or (dead_reckoning and quality == DEAD_RECKONING_QUALITY))
    out["fix"] = fix
    _field(out, "satellites", _int, f[6], "satellites")
    _field(out, "hdop", _float, f[7], "hdop")
    if fix:
        _position(out, f, 1)
        _field(out, "altitude_m", _float, f[8], "altitude")
    return out


def decode_rmc(s: Sentence, dead_reckoning: bool = False) -> dict[str, Any]:
    """RMC: recommended minimum (position, speed, course, date)."""
    _need(s, 9)
    f = s.fields
    t = _time(f[0])
    out: dict[str, Any] = {} if t is None else {"time": t}
    _field(out, "date", _date, f[8])
    status = f[1]
    mode = f[11] if len(f) > 11 else ""
    if status not in ("A", "V"):
        fix = None  # unreadable status: this sentence says nothing either way
    elif status == "V" or mode[:1] in ("N", "M", "S"):
        fix = False
    else:
        fix = mode == "" or mode[0] in FIX_MODES or (dead_reckoning and mode[0] == DEAD_RECKONING_MODE)
    out["fix"] = fix
    if fix:
        _position(out, f, 2)
        _field(out, "speed_kn", _float, f[6], "speed")
        _field(out, "course_deg", _float, f[7], "course")
    return out


DECODERS = {"GGA": decode_gga, "RMC": decode_rmc}
#: The keys a fix can carry from each sentence (gps_time needs RMC's date).
SENTENCE_KEYS: dict[str, tuple[str, ...]] = {
    "GGA": ("latitude_deg", "longitude_deg", "altitude_m", "fix_quality", "satellites", "hdop"),
    "RMC": ("latitude_deg", "longitude_deg", "speed_kn", "course_deg", "gps_time"),
}
#: The combined-solution talker: its GGA/RMC win over per-constellation ones (GP, GL, ...).
COMBINED = "GN"


@dataclass
class NmeaDecoder:
    """Turns a stream of sentences into one fix per epoch, counting what it rejects.

    An epoch is every GGA/RMC with the same UTC time (compared as a number, so
    `130711` and `130711.00` are one epoch), from any talker. It is complete when
    the next epoch starts or, once the receiver's pattern is known (two epochs in
    a row brought the same set of talker + sentence), as soon as that set has
    arrived, so readings are not held back one epoch. A sentence arriving for an
    epoch already published is counted (`late_sentences`) and waited for from
    then on, never published twice.
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
    _parts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: The (talker, kind) set of every epoch, once two epochs in a row agreed on it.
    _expected: set[tuple[str, str]] = field(default_factory=set)
    _previous: set[tuple[str, str]] = field(default_factory=set)
    _done: float | None = None

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

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
        text = values.get("time")
        epoch = None if text is None else seconds_of_day(text)
        out: list[dict[str, Any]] = []
        if epoch is not None and epoch == self._done:
            self._count("late_sentences")
            if self._expected:
                self._expected.add((s.talker, s.kind))  # the pattern grew: wait for it too
            return out
        if self._parts and epoch != self._epoch:
            seen = {(t, k) for t, k, _ in self._parts}
            if not self._expected and seen == self._previous:
                self._expected = seen  # the same set twice in a row: the pattern is known
            self._previous = seen
            out.append(self._finish())
        self._epoch = epoch
        self._parts.append((s.talker, s.kind, values))
        if self.early and self._expected and {(t, k) for t, k, _ in self._parts} >= self._expected:
            out.append(self._finish())
        return out

    def flush(self) -> list[dict[str, Any]]:
        """The epoch in progress, if any (end of input)."""
        return [self._finish()] if self._parts else []

    def _finish(self) -> dict[str, Any]:
        parts, self._parts = self._parts, []
        self._done = self._epoch
        return merge_epoch(parts)


def _primary(parts: list[tuple[str, str, dict[str, Any]]], kind: str) -> dict[str, Any] | None:
    """The combined (GN) sentence of a kind if the epoch has one, else the first."""
    found = [(t, v) for t, k, v in parts if k == kind]
    for talker, values in found:
        if talker == COMBINED:
            return values
    return found[0][1] if found else None


def merge_epoch(parts: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    """One reading from an epoch's GGA/RMC sentences (any talkers).

    Quality, HDOP, altitude and the position come from the combined GN sentence
    when there is one, else from the first. Satellites: the GN GGA's (it counts
    the satellites of the combined solution), else the sum over the talkers'
    GGAs (a receiver that sends GPGGA 8 + GLGGA 2 uses 10). The position is
    published only when the receiver says it has a fix and nothing in the epoch
    says it has not (e.g. GGA quality 0 with RMC status A: no position).
    """
    gga = _primary(parts, "GGA")
    rmc = _primary(parts, "RMC")
    said = [v["fix"] for v in (gga, rmc) if v is not None and v["fix"] is not None]
    fix = bool(said) and all(said)
    out: dict[str, Any] = {}
    if gga is not None:
        for key in ("fix_quality", "hdop"):
            if key in gga:
                out[key] = gga[key]
        has_combined = any(t == COMBINED and k == "GGA" for t, k, _ in parts)
        counts = {t: v.get("satellites") for t, k, v in parts if k == "GGA"}
        if has_combined:
            counts = {COMBINED: counts[COMBINED]}
        known = [c for c in counts.values() if c is not None]
        if known:
            out["satellites"] = ABSENT if ABSENT in known else sum(known)
    if fix:
        for source in (gga, rmc):
            if source is not None and source["fix"] and "latitude_deg" in source:
                out["latitude_deg"] = source["latitude_deg"]
                out["longitude_deg"] = source["longitude_deg"]
                break
        if gga is not None and "altitude_m" in gga:
            out["altitude_m"] = gga["altitude_m"]
        if rmc is not None:
            for key in ("speed_kn", "course_deg"):
                if key in rmc:
                    out[key] = rmc[key]
    if rmc is not None and "date" in rmc and "time" in rmc:
        date = rmc["date"]
        out["gps_time"] = ABSENT if date is ABSENT else f"{date}T{rmc['time']}Z"
    return {k: out[k] for k in KEY_ORDER if k in out}


#: The order of a reading's keys (what `watch` and the README show).
KEY_ORDER = ("fix_quality", "latitude_deg", "longitude_deg", "altitude_m", "satellites", "hdop",
             "speed_kn", "course_deg", "gps_time")


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
    sentences: list[Literal["GGA", "RMC"]] = Field(
        default=["GGA", "RMC"], min_length=1,
        description="Sentences the receiver sends: GGA (position, altitude, fix quality, "
        "satellites, HDOP), RMC (position, speed, course, UTC date and time). Others are ignored.",
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
    summary="GPS receiver (NMEA 0183 GGA/RMC)",
    kind="serial",
    config=NmeaConfig,
    quantities=("latitude_deg", "longitude_deg", "altitude_m", "fix_quality", "satellites",
                "hdop", "speed_kn", "course_deg", "gps_time"),
    make_stream=_make_stream,
    reference="NMEA 0183 v4.11",
    model="NMEA 0183 GPS receiver",
    publishes=_publishes,
)
