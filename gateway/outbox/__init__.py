"""The outbox: the only path from readers to the broker.

`outbox` holds the `Outbox` (readers put, the spooler thread commits, the
publisher takes and acknowledges) and `open_spool`; `inbox` the bounded queue in
front of the spooler; `spool` the SQLite and in-memory stores.
"""

from gateway.outbox.inbox import Inbox
from gateway.outbox.outbox import Outbox, OutboxStats, open_spool
from gateway.outbox.spool import Message

__all__ = ["Inbox", "Message", "Outbox", "OutboxStats", "open_spool"]
