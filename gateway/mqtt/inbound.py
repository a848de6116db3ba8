"""Messages the broker delivers to the gateway (commands), handed over by the publisher.

The publisher thread owns the paho client, so its `on_message` callback does no work:
it puts one `Inbound` on a queue and returns. The control thread (gateway.control)
takes it from there.
"""

from __future__ import annotations

from typing import Any, NamedTuple


# A NamedTuple: every daemon loads this module (why that matters: gateway.slots).
class Inbound(NamedTuple):
    topic: str
    payload: bytes
    #: The broker delivered it as a retained message (it was stored, not just sent).
    retain: bool
    #: time.time() when paho handed it over.
    received: float
    #: MQTT 5 properties (e.g. MessageExpiryInterval), or None.
    properties: Any = None
