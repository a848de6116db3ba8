"""`driver: nmea` — a GPS receiver speaking NMEA 0183 (GGA and/or RMC) on a serial port."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gateway.catalog.spec import DeviceSpec, LineStream
from gateway.config.model import SerialDevice
from gateway.config.types import Duration
from gateway.protocols.nmea import SENTENCE_KEYS, NmeaDecoder


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
