"""NMEA 0183: GGA and RMC sentences from any talker (GP, GN, GL, GA, BD, ...).

Sentence layout (NMEA 0183 v4.11 §5.3): `$TTSSS,f1,f2,...*HH<CR><LF>`, where
HH is the XOR of every character between `$` and `*` as two hex digits.
A sentence without a valid checksum is rejected: a GPS on a noisy UART that
loses a byte would otherwise publish a position kilometres away.

Fields used (NMEA 0183 §6.3):
  GGA  time, lat, N/S, lon, E/W, quality, satellites, HDOP, altitude, M, ...
  RMC  time, status A/V, lat, N/S, lon, E/W, speed (kn), course (°true),
       date ddmmyy, magnetic variation, E/W[, mode]

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


class NmeaError(ValueError):
    """A sentence that is malformed or fails its checksum."""


class ChecksumError(NmeaError):
    pass


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
    """Split and verify one sentence. Raises NmeaError / ChecksumError."""
    if isinstance(line, bytes):
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise NmeaError("not ASCII") from None
    else:
        text = line
    text = text.strip()
    start = text.rfind("$")  # noise before the sentence start is tolerated
    if start < 0:
        raise NmeaError("no '$'")
    text = text[start:]
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
    address = parts[0]
    if len(address) != 5 or not address.isalnum():
        raise NmeaError(f"bad address field {address!r}")
    return Sentence(address[:2], address[2:], tuple(parts[1:]))


def _coord(value: str, hemi: str, deg_digits: int, positive: str, negative: str) -> float | None:
    """ddmm.mmmm (lat) / dddmm.mmmm (lon) + hemisphere -> signed degrees."""
    if not value and not hemi:
        return None
    if hemi not in (positive, negative) or len(value) < deg_digits + 2:
        raise NmeaError(f"bad coordinate {value!r},{hemi!r}")
    try:
        deg = int(value[:deg_digits])
        minutes = float(value[deg_digits:])
    except ValueError:
        raise NmeaError(f"bad coordinate {value!r}") from None
    if not 0 <= minutes < 60:
        raise NmeaError(f"minutes out of range in {value!r}")
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
    try:
        return int(value)
    except ValueError:
        raise NmeaError(f"bad {what} {value!r}") from None


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


def _date(value: str) -> str | None:
    """ddmmyy -> 'YYYY-MM-DD'. Two-digit years: 80-99 -> 19xx, else 20xx (GPS epoch 1980)."""
    if value == "":
        return None
    if len(value) != 6 or not value.isdigit():
        raise NmeaError(f"bad date {value!r}")
    dd, mm, yy = int(value[0:2]), int(value[2:4]), int(value[4:6])
    if not (1 <= dd <= 31 and 1 <= mm <= 12):
        raise NmeaError(f"bad date {value!r}")
    year = 1900 + yy if yy >= 80 else 2000 + yy
    return f"{year:04d}-{mm:02d}-{dd:02d}"


def _need(s: Sentence, n: int) -> None:
    if len(s.fields) < n:
        raise NmeaError(f"{s.kind} has {len(s.fields)} fields, expected at least {n}")


def decode_gga(s: Sentence) -> dict[str, Any]:
    """GGA: position fix. Keys absent when the receiver left the field empty."""
    _need(s, 9)
    f = s.fields
    out: dict[str, Any] = {}
    _put(out, "time", _time(f[0]))
    lat = _coord(f[1], f[2], 2, "N", "S")
    lon = _coord(f[3], f[4], 3, "E", "W")
    quality = _int(f[5], "fix quality")
    _put(out, "fix_quality", quality)
    # Position is meaningless without a fix (quality 0), even if a receiver repeats the last one.
    if quality and lat is not None and lon is not None:
        out["latitude_deg"] = lat
        out["longitude_deg"] = lon
        _put(out, "altitude_m", _float(f[8], "altitude"))
    _put(out, "satellites", _int(f[6], "satellites"))
    _put(out, "hdop", _float(f[7], "hdop"))
    return out


def decode_rmc(s: Sentence) -> dict[str, Any]:
    """RMC: recommended minimum (position, speed, course, date)."""
    _need(s, 9)
    f = s.fields
    out: dict[str, Any] = {}
    _put(out, "time", _time(f[0]))
    _put(out, "date", _date(f[8]))
    status = f[1]
    if status not in ("A", "V"):
        raise NmeaError(f"bad RMC status {status!r}")
    lat = _coord(f[2], f[3], 2, "N", "S")
    lon = _coord(f[4], f[5], 3, "E", "W")
    if status == "A":
        if lat is not None and lon is not None:
            out["latitude_deg"] = lat
            out["longitude_deg"] = lon
        _put(out, "speed_kn", _float(f[6], "speed"))
        _put(out, "course_deg", _float(f[7], "course"))
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` only for fields the sentence actually carried (empty ones are None)."""
    if value is not None:
        out[key] = value


DECODERS = {"GGA": decode_gga, "RMC": decode_rmc}
#: The keys a fix can carry from each sentence (gps_time needs RMC's date).
SENTENCE_KEYS: dict[str, tuple[str, ...]] = {
    "GGA": ("latitude_deg", "longitude_deg", "altitude_m", "fix_quality", "satellites", "hdop"),
    "RMC": ("latitude_deg", "longitude_deg", "speed_kn", "course_deg", "gps_time"),
}


@dataclass
class NmeaDecoder:
    """Turns a stream of sentences into fixes, counting what it rejects.

    A receiver sends one sentence of each kind per epoch (same UTC time). A fix
    is complete when every kind in `sentences` of one epoch arrived, or when the
    next epoch starts (a receiver that sends fewer kinds than configured). Kinds
    not in `sentences` are ignored, so a fix carries only the keys they give.
    """

    counters: dict[str, int] = field(default_factory=dict)
    sentences: frozenset[str] = frozenset(DECODERS)
    _epoch: str | None = None
    _pending: dict[str, Any] = field(default_factory=dict)
    _kinds: set[str] = field(default_factory=set)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def feed(self, line: bytes | str) -> list[dict[str, Any]]:
        """One line in; zero or more completed fixes out."""
        try:
            s = parse_sentence(line)
        except ChecksumError:
            self._count("bad_checksum")
            return []
        except NmeaError:
            self._count("malformed")
            return []
        decoder = DECODERS.get(s.kind) if s.kind in self.sentences else None
        if decoder is None:
            self._count("ignored")
            return []
        try:
            values = decoder(s)
        except NmeaError:
            self._count("malformed")
            return []
        self._count("sentences")
        out: list[dict[str, Any]] = []
        epoch = values.pop("time", None)
        if epoch != self._epoch and self._kinds:
            out.append(self._finish())
        self._epoch = epoch
        self._kinds.add(s.kind)
        self._pending.update(values)
        if self._kinds >= self.sentences:
            out.append(self._finish())
        return out

    def _finish(self) -> dict[str, Any]:
        fix = self._pending
        date = fix.pop("date", None)
        if date is not None and self._epoch is not None:
            fix["gps_time"] = f"{date}T{self._epoch}Z"
        self._pending = {}
        self._kinds = set()
        return fix


# -- the catalog entry ------------------------------------------------------------

class NmeaConfig(SerialDevice):
    driver: Literal["nmea"]
    interval: Duration | None = Field(  # type: ignore[assignment]
        default=None,
        description="Publish the latest fix at most this often; absent: every fix.",
    )
    max_line: int = Field(
        default=256, ge=82, le=65536,
        description="Longest line kept (NMEA allows 82 characters); longer ones are dropped.",
    )
    silence_timeout: Duration = Field(
        default=10.0, description="No valid sentence for this long marks the device failing.",
    )
    sentences: list[Literal["GGA", "RMC"]] = Field(
        default=["GGA", "RMC"], min_length=1,
        description="Sentences the receiver sends: GGA (position, altitude, fix quality, "
        "satellites, HDOP), RMC (position, speed, course, UTC date and time). Others are ignored.",
    )

    @field_validator("sentences")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each sentence at most once")
        return v


def _make_stream(cfg: NmeaConfig, counters: dict[str, int]) -> LineStream:
    decoder = NmeaDecoder(counters=counters, sentences=frozenset(cfg.sentences))
    return LineStream(decode=decoder.feed, interval=cfg.interval, max_line=cfg.max_line,
                      silence_timeout=cfg.silence_timeout)


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
