"""A GPS receiver driving in a circle, sending the device's `sentences` per epoch.

In a u-blox receiver's order: RMC, VTG, GGA, GNS, GSA, GLL (whichever are configured).

sim settings (all optional):
  rate_hz: 1            epochs per second
  lat: 48.1173          centre of the track (degrees, signed)
  lon: 11.5167
  radius_m: 200
  speed_kn: 10
  altitude_m: 545.4
  satellites: 8
  hdop: 0.9
  talker: GP            GP, GN, GL, ...
  fix: true             false: the receiver reports no fix (quality 0, RMC status V)
  bad_checksum_every: 0 every Nth sentence gets a wrong checksum (0: never)
  garbage_every: 0      every Nth epoch is preceded by binary noise
  partial_every: 0      every Nth epoch starts with half a sentence (no newline)
  ubx_every: 0          every Nth sentence is preceded by a binary UBX frame (a u-blox
                        port with UBX and NMEA output both enabled), no newline between
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.protocols.framer import ubx_checksum
from hardware_sim.serial.pty import PtyDevice

_EARTH_M_PER_DEG = 111_320.0  # metres per degree of latitude (spherical approximation)
_KN = 1852.0 / 3600.0  # m/s per knot


def nmea_sentence(body: str) -> bytes:
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return f"${body}*{c:02X}\r\n".encode("ascii")


def ubx_frame(cls: int, msg: int, payload: bytes) -> bytes:
    """`B5 62 class id length(LE) payload ck_a ck_b` (u-blox interface description, UBX frame)."""
    body = bytes([cls, msg]) + len(payload).to_bytes(2, "little") + payload
    return b"\xb5\x62" + body + ubx_checksum(body)


#: A NAV-PVT-sized frame whose payload holds `$`, `*` and newlines, as binary payloads do.
_UBX_NAV_PVT = ubx_frame(0x01, 0x07, bytes((i * 37) % 256 for i in range(88)) + b"$\n*\r")


def _coord(value: float, deg_digits: int) -> tuple[str, bool]:
    total_min = round(abs(value) * 60.0, 4)
    deg, minutes = divmod(total_min, 60.0)
    return f"{int(deg):0{deg_digits}d}{minutes:07.4f}", value < 0


class GpsSim(PtyDevice):
    def __init__(self, name: str, sim: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time, link_dir: str | None = None,
                 sentences: Sequence[str] = ("GGA", "RMC")) -> None:
        s = dict(sim or {})
        super().__init__(name, rate_hz=float(s.get("rate_hz", 1.0)), link_dir=link_dir,
                         clock=clock)
        self.lat0 = float(s.get("lat", 48.1173))
        self.lon0 = float(s.get("lon", 11.5167))
        self.radius_m = float(s.get("radius_m", 200.0))
        self.speed_kn = float(s.get("speed_kn", 10.0))
        self.altitude_m = float(s.get("altitude_m", 545.4))
        self.satellites = int(s.get("satellites", 8))
        self.hdop = float(s.get("hdop", 0.9))
        self.talker = str(s.get("talker", "GP"))
        self.fix = bool(s.get("fix", True))
        self.bad_checksum_every = int(s.get("bad_checksum_every", 0))
        self.garbage_every = int(s.get("garbage_every", 0))
        self.partial_every = int(s.get("partial_every", 0))
        self.kinds = tuple(sentences)  # what the receiver is set to send
        self.ubx_every = int(s.get("ubx_every", 0))
        self.t0 = clock()
        self.epochs = 0
        self.sentences = 0

    def position(self, t: float) -> tuple[float, float, float]:
        """(lat, lon, course_deg) at Unix time t, moving counter-clockwise on the circle."""
        w = (self.speed_kn * _KN) / self.radius_m if self.radius_m > 0 else 0.0
        theta = w * (t - self.t0)
        east, north = self.radius_m * math.cos(theta), self.radius_m * math.sin(theta)
        lat = self.lat0 + north / _EARTH_M_PER_DEG
        lon = self.lon0 + east / (_EARTH_M_PER_DEG * math.cos(math.radians(self.lat0)))
        # Velocity is r·w·(-sin θ, cos θ) (east, north); course is measured from north.
        course = math.degrees(math.atan2(-math.sin(theta), math.cos(theta))) % 360.0
        return lat, lon, course

    def sentences_at(self, t: float) -> list[str]:
        """The bodies (without $ and checksum) of the sentences it sends, for Unix time t."""
        lat, lon, course = self.position(t)
        tm = time.gmtime(t)
        hhmmss = time.strftime("%H%M%S", tm) + f".{int((t % 1) * 100):02d}"
        ddmmyy = time.strftime("%d%m%y", tm)
        la, south = _coord(lat, 2)
        lo, west = _coord(lon, 3)
        ns, ew = ("S" if south else "N"), ("W" if west else "E")
        hms = hhmmss
        if self.fix:
            pos = f"{la},{ns},{lo},{ew}"
            bodies = {
                "RMC": f"RMC,{hms},A,{pos},{self.speed_kn:.1f},{course:.1f},{ddmmyy},,,A",
                "VTG": f"VTG,{course:.1f},T,,M,{self.speed_kn:.1f},N,"
                       f"{self.speed_kn * 1.852:.1f},K,A",
                "GGA": f"GGA,{hms},{pos},1,{self.satellites:02d},{self.hdop:.1f},"
                       f"{self.altitude_m:.1f},M,46.9,M,,",
                "GNS": f"GNS,{hms},{pos},AN,{self.satellites:02d},{self.hdop:.1f},"
                       f"{self.altitude_m:.1f},46.9,,,V",
                "GSA": "GSA,A,3," + ",".join(f"{i + 1:02d}" if i < min(self.satellites, 12)
                                             else "" for i in range(12))
                       + f",{self.hdop * 1.5:.1f},{self.hdop:.1f},{self.hdop * 1.2:.1f}",
                "GLL": f"GLL,{pos},{hms},A,A",
            }
        else:
            bodies = {
                "RMC": f"RMC,{hms},V,,,,,,,{ddmmyy},,,N",
                "VTG": "VTG,,T,,M,,N,,K,N",
                "GGA": f"GGA,{hms},,,,,0,00,99.9,,M,,M,,",
                "GNS": f"GNS,{hms},,,,,NN,00,99.9,,,,,V",
                "GSA": "GSA,A,1,,,,,,,,,,,,,99.9,99.9,99.9",
                "GLL": f"GLL,,,,,{hms},V,N",
            }
        return [self.talker + body for kind, body in bodies.items() if kind in self.kinds]

    def tick(self) -> bytes:
        self.epochs += 1
        out = b""
        if self.garbage_every and self.epochs % self.garbage_every == 0:
            out += bytes([0x00, 0xFF, 0x24, 0x13, 0x80, 0xFE, 0x2A]) + b"\r\n"
        bodies = self.sentences_at(self.clock())
        if self.partial_every and self.epochs % self.partial_every == 0:
            out += nmea_sentence(bodies[0])[:20]  # cut off mid-sentence, like a dropped USB packet
        for body in bodies:
            self.sentences += 1
            if self.ubx_every and self.sentences % self.ubx_every == 0:
                out += _UBX_NAV_PVT
            line = nmea_sentence(body)
            if self.bad_checksum_every and self.sentences % self.bad_checksum_every == 0:
                good = line[-4:-2]
                bad = f"{int(good, 16) ^ 0x01:02X}".encode("ascii")
                line = line[:-4] + bad + b"\r\n"
            out += line
        return out
