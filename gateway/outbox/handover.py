"""Seqs that leave the process before they are durable, and what a restart makes of them.

The spooler hands a transaction's rows to the publisher before their COMMIT (latency,
docs/spool.md), and with `sync: full` the fsync that makes a COMMIT durable runs after
it (gateway.outbox.walsync). A reading can therefore reach the broker and still be
missing from the spool after a crash. If the restarted spool gave its seq to the next
reading, a consumer that drops duplicates by seq would drop that new reading.

What survives depends on what crashed:

- **The process** (SIGKILL, a fault): the kernel's page cache keeps every COMMIT and
  every plain write. Only the rows handed over ahead of their COMMIT can be missing, so
  their seqs are written to `<spool>.staged` first (`HandoverNote`, no fsync: it has to
  outlive the process, not the machine). A restart continues above them: no gap unless
  such rows really are missing, and never a seq given twice.
- **The machine** (a power cut, a kernel crash): commits after the last fsync can be
  gone too. The spool records this boot's id (`boot_id`) while it is open; a restart
  that finds the mark of another boot continues above the seq lease (gateway.outbox.
  seqlease): a gap of at most the lease block, never a seq given twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("gateway.spool")

#: One encoder for every note: json.dumps with separators builds a new one per call
#: (a third of a note's cost, and a note is written at every commit).
_encode = json.JSONEncoder(separators=(",", ":")).encode

#: A random id the kernel makes anew at every boot (proc_sys_kernel(5), "boot_id").
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID_PATH) -> str:
    """This boot's id; "" where the kernel has none (every unclean stop then counts as a
    power cut: the safe side)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.debug("no boot id from %s: %s", path, exc)
        return ""


class HandoverNote:
    """`<spool>.staged`: each device's highest seq handed over ahead of its COMMIT, as one
    JSON line `{"spool_id": ..., "seqs": {device: seq}}` rewritten in place (a shorter
    line leaves old bytes after its newline, which `load` ignores).

    One pwrite per early hand-over and no fsync: the page cache keeps it through a
    SIGKILL, and a dirty page is written back once per writeback interval however often
    it changes, so it costs the SD card next to nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seqs: dict[str, int] = {}  # this run's, all devices
        self._fd: int | None = None
        self._failed = False  # logged once; early hand-over stays off until it works

    def load(self, spool_id: str) -> dict[str, int]:
        """The seqs the last run noted for this spool ({} if none, or another spool's)."""
        try:
            line = self.path.read_bytes().split(b"\n", 1)[0]
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read %s (%s): seqs handed over before a crash are not known; "
                        "they are still below the seq lease", self.path, exc)
            return {}
        try:
            data = json.loads(line)
            if data.get("spool_id") != spool_id:
                return {}
            return {str(d): int(q) for d, q in data["seqs"].items()}
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # Torn by a crash inside the write, or not ours: what it held is below the lease.
            log.warning("ignoring %s (%s)", self.path, exc)
            return {}

    def note(self, spool_id: str, seqs: dict[str, int]) -> bool:
        """Record `seqs` before they are handed over; False if that failed (then they
        must wait for their COMMIT)."""
        merged = dict(self.seqs)
        for device, seq in seqs.items():
            if seq > merged.get(device, 0):
                merged[device] = seq
        data = _encode({"spool_id": spool_id, "seqs": merged}).encode() + b"\n"
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if os.pwrite(self._fd, data, 0) != len(data):
                raise OSError(f"short write to {self.path}")
        except OSError as exc:
            if not self._failed:
                log.warning("cannot write %s (%s): readings are handed to the publisher "
                            "after their COMMIT until it works (~0.5 ms more latency)",
                            self.path, exc)
                self._failed = True
            return False
        if self._failed:
            log.info("%s is writable again", self.path)
            self._failed = False
        self.seqs = merged
        return True

    def check(self) -> None:
        """If the path no longer names the file the notes go to (deleted, replaced), the
        next note goes to the path anew: the start after a crash reads the path, and
        notes written to an unlinked file would be lost to it. The next note holds every
        device's seq (`seqs`), so nothing noted before is missing from it."""
        if self._fd is None:
            return
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            what = "deleted"
        except OSError as exc:
            log.debug("cannot stat %s: %s", self.path, exc)
            return
        else:
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                return
            what = "replaced by another file"
        log.warning("%s was %s while in use; the next note writes it anew", self.path, what)
        os.close(self._fd)
        self._fd = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
