"""`seq` leases: a small file beside the spool so `seq` never goes back.

The spool's `seqs` table says where each device's `seq` stands, but it dies with
the spool file (deleted, corrupt, replaced, a lost SD card partition...). A new
spool would start again at 1, and a consumer that drops duplicates by `seq`
would then throw new readings away as "already seen".

So before a `seq` above the lease is committed, the spool writes
`<spool path>.seq` (JSON: the spool's id and, per device, a ceiling `seq + block`)
with write-to-temp, fsync, rename, fsync of the directory. Every `seq` ever
committed is at or below the ceiling on disk. At start:

- the lease names this spool's id: the spool's own `seqs` are exact; use them
  (no gap across restarts, SIGKILL or power loss);
- the lease names another spool (this one is new, was moved aside, or was
  replaced): the spool lost its history, so each device continues above its
  ceiling. Consumers see a gap of at most `block`, never a `seq` going back.

One rename per `block` readings of a device (10,000: at 1 Hz about every 3 hours),
so the SD card hardly notices.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("gateway.spool")

LEASE_BLOCK = 10_000


class SeqLease:
    def __init__(self, path: Path, block: int = LEASE_BLOCK) -> None:
        self.path = path
        self.block = block
        self.spool_id: str | None = None
        self.ceilings: dict[str, int] = {}

    def load(self) -> None:
        """Read the lease file; a missing or unreadable one is an empty lease."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            spool_id = data["spool_id"]
            ceilings = {str(k): int(v) for k, v in data["ceilings"].items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("seq lease %s is unreadable (%s); ignoring it", self.path, exc)
            return
        self.spool_id = str(spool_id)
        self.ceilings = ceilings

    def start_seqs(self, spool_id: str, spool_seqs: dict[str, int]) -> dict[str, int]:
        """Where each device's `seq` continues when opening the spool `spool_id`."""
        if self.spool_id is None or self.spool_id == spool_id:
            return dict(spool_seqs)
        seqs = dict(spool_seqs)
        for device, ceiling in self.ceilings.items():
            seqs[device] = max(seqs.get(device, 0), ceiling)
        log.warning(
            "the spool %s is not the one the seq lease %s was written for (its history was "
            "lost): seq continues above the lease for %d devices, so it never goes back",
            self.path.with_suffix(""), self.path, len(self.ceilings),
        )
        return seqs

    def covers(self, seqs: dict[str, int]) -> bool:
        return all(seq <= self.ceilings.get(device, 0) for device, seq in seqs.items())

    def extend(self, spool_id: str, seqs: dict[str, int]) -> None:
        """Make the lease cover `seqs` (and name `spool_id`); raises OSError if it cannot."""
        if self.spool_id == spool_id and self.covers(seqs):
            return
        ceilings = dict(self.ceilings)
        for device, seq in seqs.items():
            if seq > ceilings.get(device, 0) or self.spool_id != spool_id:
                ceilings[device] = max(ceilings.get(device, 0), seq + self.block)
        _write_atomically(self.path, json.dumps(
            {"spool_id": spool_id, "ceilings": ceilings}, sort_keys=True).encode())
        self.spool_id = spool_id
        self.ceilings = ceilings


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
