"""Every use of paho-mqtt beyond its public API, in one place, behind a version check.

The publisher runs paho's network loop itself (see publisher.py). Two private
seams make that loop cheaper; they are used only with a paho-mqtt release in
`TESTED` (the range pyproject.toml pins) whose `Client` still has the names:

- `_create_socket` (the seam paho itself uses for its websocket wrapper): the
  connection becomes a `BufferedSocket`, one `recv` per 64 KiB and one `send`
  per round instead of one syscall per packet.
- `_handle_pubackcomp`, reading `_in_packet`, `_out_message_mutex`,
  `_out_messages` and calling `_do_on_publish`: a plain two-byte PUBACK skips
  paho's decoding (see `FastClient._handle_pubackcomp`).

What each buys, measured as the gateway's CPU per reading delivered from a spooled
backlog (docs/scaling.md, "paho's private seams"): without the PUBACK fast path
+45..75 %, without the buffered socket +7..16 % (and more broker CPU), on the
public API alone +75 %. A third seam, `_reset_sockets` (dropping the wake-up socket
pair paho opens for a loop thread this process does not run), bought nothing
measurable and was removed: paho's byte per publish into that pair is cheap.
Outside the tested range, or if a name moved, `make_client` returns a plain
`paho.mqtt.client.Client` and the publisher runs on the public API alone: the
same behaviour, slower, said once in the log.
"""

from __future__ import annotations

import logging
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt.buffered_socket import BufferedSocket

log = logging.getLogger("gateway.mqtt")

#: paho-mqtt releases (major, minor) whose private names below were read and tested.
TESTED = ((2, 1), (2, 2))
#: The private names the seams use, per class (checked at import).
PRIVATE_NAMES = ("_create_socket", "_handle_pubackcomp", "_do_on_publish")


def parse_version(text: str) -> tuple[int, int] | None:
    """'2.2.0' -> (2, 2); None if it does not start with two numbers."""
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def seams_usable(version: str, client_cls: type[Any] = mqtt.Client) -> str | None:
    """Why the private seams cannot be used with this paho (None: they can)."""
    if parse_version(version) not in TESTED:
        tested = ", ".join(f"{a}.{b}" for a, b in TESTED)
        return f"paho-mqtt {version} is not a tested release ({tested})"
    missing = [n for n in PRIVATE_NAMES if not callable(getattr(client_cls, n, None))]
    if missing:
        return f"paho-mqtt {version} has no {', '.join(missing)}"
    return None


#: None when the seams are in use; else why not (logged once, when the first client is made).
FALLBACK_REASON = seams_usable(paho.mqtt.__version__)
_fallback_logged = False

# Shared by every fast-path PUBACK: our on_publish only reads them.
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


class FastClient(mqtt.Client):
    """paho's client on a `BufferedSocket`, with the PUBACK fast path.

    tests/test_receive_maximum.py and tests/test_paho_seams.py fail if a seam moves.
    """

    fast_pubacks = 0  # PUBACKs that took the fast path (for the seam test)

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        """PUBACK fast path: a plain success acknowledgement skips paho's decoding.

        paho decodes every PUBACK into a fresh ReasonCode, Properties and named tuple
        (a quarter of the publisher's time under load). A PUBACK of exactly two bytes
        is a packet id and nothing else: Success with no properties in MQTT 5
        (§3.4.2.1, the reason code may be omitted when it is 0x00 and there are no
        properties; Mosquitto omits it) and the only form in 3.1.1 (§3.4.2). That
        needs no decoding. Anything else (a failure reason, properties, PUBCOMP) takes
        paho's own path.
        """
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        self.fast_pubacks += 1
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def make_client(*args: Any, **kwargs: Any) -> mqtt.Client:
    """A paho client (arguments as for `paho.mqtt.client.Client`): the fast one if the
    installed paho is a tested release, else the plain one."""
    global _fallback_logged
    if FALLBACK_REASON is None:
        return FastClient(*args, **kwargs)
    if not _fallback_logged:
        _fallback_logged = True
        log.warning("%s: using its public API only (slower delivery)", FALLBACK_REASON)
    return mqtt.Client(*args, **kwargs)

