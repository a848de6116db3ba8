"""The burst journal: `buffer.sync: full` in one 4 KiB block per burst.

SQLite's WAL writes a commit as frames of page size + 24 bytes, one after another in
the file; with an fsync per burst each commit dirties the 4 KiB page-cache page (or
two) its frames land in, 1.5 pages on average for one 2 KiB frame (docs/small-pi.md:
9.5x a 65-byte payload at ten readings per commit, before checkpoints). This file
places its writes itself: a ring of `BLOCKS` blocks of 4 KiB, written once with zeros
when made (so no later write allocates a block, and an fdatasync has no metadata to
write), then overwritten in place, one record per burst, each starting on a block. A
burst of ten readings is one block: one page per fsync.

A record holds a burst's readings (id, seq, device, topic, payload), the ids the
broker acknowledged since the last record, and the seqs of devices whose latest row
is no longer in the ring (`carry`). Its header names the spool (`tag`), its number,
and `oldest`: the number of the oldest record that still held a reading neither
acknowledged nor written to SQLite when it was written. A CRC32 covers the rest.

At open (`recover`), the newest valid record of this spool says where to look: the
records from its `oldest` on hold every reading that was only here, and the acks in
them say which of those the broker took. Every valid record of the spool gives seqs
(seqs only go up, so an old record can only say less). A record with no reading that
names itself the oldest is a fence: nothing before it counts (the owner writes one when
what the ring held is all in SQLite).

The owner (`SqliteSpool`) keeps the readings in memory until the broker acknowledges
them or they are due for SQLite (not acknowledged within a short hold), and a block
is overwritten only once each reading in the record there has left memory
(`append`'s `release`): a reading is always in the ring, in SQLite, or acknowledged.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from gateway.slots import SlotsRecord

log = logging.getLogger("gateway.spool")

#: The page-cache page: a record starts on one, so an fsync writes the pages it filled.
BLOCK = 4096
#: 1 MiB: at ten readings a second a lap takes minutes, far longer than the hold.
BLOCKS = 256

_MAGIC = b"EGJ1"
# magic, crc32, record number, spool tag, oldest live record, blocks, body length
_HEAD = struct.Struct("<4sIQQQII")
_RUN = struct.Struct("<QQ")
_COUNT = struct.Struct("<I")
_SEQ = struct.Struct("<HQ")
# id, seq, then the lengths of device, topic (MQTT caps a topic at 65,535 bytes), payload
_ROW = struct.Struct("<QQHHI")


class RecordTooLarge(ValueError):
    """A burst needs more blocks than one record may have (an eighth of the ring)."""


def spool_tag(spool_id: str) -> int:
    """The 64-bit tag a spool's records carry (its id is 32 hex digits)."""
    return int(spool_id[:16], 16) if spool_id else 0


class RowLike(Protocol):
    """What a record takes of a reading (the spool's Message is one)."""

    @property
    def id(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class Row(SlotsRecord):
    """A reading as the journal keeps it."""

    __slots__ = ("id", "seq", "device", "topic", "payload")

    def __init__(self, id: int, seq: int, device: str, topic: str,
                 payload: bytes) -> None:
        self.id = id
        self.seq = seq
        self.device = device
        self.topic = topic
        self.payload = payload


class Recovered(SlotsRecord):
    """What the ring held at open."""

    __slots__ = ("rows", "seqs", "top_id", "records")

    def __init__(self) -> None:
        self.rows: list[Row] = []  # only here, not acknowledged, by id
        self.seqs: dict[str, int] = {}  # each device's highest seq
        self.top_id = 0  # the highest id in any record of the spool
        self.records = 0  # valid records of the spool found


class _Record(SlotsRecord):
    __slots__ = ("number", "start", "blocks", "last_id", "devices")

    def __init__(self, number: int, start: int, blocks: int, last_id: int,
                 devices: tuple[str, ...]) -> None:
        self.number = number
        self.start = start  # first block
        self.blocks = blocks
        self.last_id = last_id  # the highest reading id written in this record or before it
        self.devices = devices  # whose rows it holds


def encode(rows: Sequence[RowLike], acks: list[tuple[int, int]], carry: dict[str, int]) -> bytes:
    """A record's body (see the module docstring)."""
    parts = [_COUNT.pack(len(acks))]
    parts.extend(_RUN.pack(first, last) for first, last in acks)
    parts.append(_COUNT.pack(len(carry)))
    for device, seq in carry.items():
        name = device.encode()
        parts.append(_SEQ.pack(len(name), seq))
        parts.append(name)
    parts.append(_COUNT.pack(len(rows)))
    for r in rows:
        dev, topic = r.device.encode(), r.topic.encode()
        parts.append(_ROW.pack(r.id, r.seq, len(dev), len(topic), len(r.payload)))
        parts += (dev, topic, r.payload)
    return b"".join(parts)


def decode(body: bytes) -> tuple[list[Row], list[tuple[int, int]], dict[str, int]]:
    """Inverse of `encode`; raises ValueError (or struct.error) on a body that is not one."""
    at = 0

    def take(s: struct.Struct) -> tuple[int, ...]:
        nonlocal at
        values = s.unpack_from(body, at)
        at += s.size
        return values

    def text(n: int) -> str:
        nonlocal at
        if at + n > len(body):
            raise ValueError("record body ends inside a field")
        value = body[at:at + n].decode()
        at += n
        return value

    (n_acks,) = take(_COUNT)
    acks = [(int(a), int(b)) for a, b in (take(_RUN) for _ in range(n_acks))]
    (n_carry,) = take(_COUNT)
    carry: dict[str, int] = {}
    for _ in range(n_carry):
        size, seq = take(_SEQ)
        carry[text(size)] = seq
    (n_rows,) = take(_COUNT)
    rows = []
    for _ in range(n_rows):
        rid, seq, dlen, tlen, plen = take(_ROW)
        device, topic = text(dlen), text(tlen)
        if at + plen > len(body):
            raise ValueError("record body ends inside a payload")
        rows.append(Row(rid, seq, device, topic, body[at:at + plen]))
        at += plen
    if at != len(body):
        raise ValueError("record body has bytes after its rows")
    return rows, acks, carry


class BurstJournal:
    """The ring file `path`: `recover` once, then `append` one record per burst."""

    def __init__(self, path: Path, spool_id: str, blocks: int = BLOCKS,
                 seq_of: Callable[[str], int] = lambda device: 0) -> None:
        self.path = path
        self._seq_of = seq_of  # a device's current seq (the owner's), for `carry`
        self.tag = spool_tag(spool_id)
        self.blocks = blocks
        # A burst larger than an eighth of the ring goes to SQLite instead (a flood).
        self.max_record_blocks = max(1, blocks // 8)
        self._fd: int | None = None
        self._pos = 0  # the block the next record starts on
        self._next_number = 1
        self._ring: deque[_Record] = deque()  # this run's records in the ring, oldest first
        self._carry: dict[str, int] = {}  # seqs of devices whose latest row left the ring
        self._latest: dict[str, int] = {}  # device -> number of the record with its latest row
        self.records_written = 0
        # The last record written holds no reading and names itself the oldest: no
        # record before it counts at the next start (a fence).
        self.fenced = False

    # -- opening -----------------------------------------------------------------
    def recover(self, any_spool: bool = False) -> Recovered:
        """Read the ring (if there is one) and say what only it holds. Also sets where
        this run's records go: after the newest one found, numbered above it. With
        `any_spool` (the spool file was unreadable and started anew) the records of the
        spool that wrote the newest one count."""
        out = Recovered()
        found: list[tuple[int, int, int, int, int, list[Row], list[tuple[int, int]],
                          dict[str, int]]] = []
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return out
        try:
            # Block by block, without readahead, then dropped from the cache (see
            # _drop_cache); no 1 MiB buffer either, which the C heap would keep.
            _advise(fd, "POSIX_FADV_RANDOM")
            nblocks = os.fstat(fd).st_size // BLOCK
            for start in range(nblocks):
                data = os.pread(fd, BLOCK, start * BLOCK)
                if data[:4] != _MAGIC or len(data) < _HEAD.size:
                    continue
                _, crc, number, tag, oldest, blocks, size = _HEAD.unpack_from(data)
                end = _HEAD.size + size
                if blocks < 1 or start + blocks > nblocks or end > blocks * BLOCK:
                    continue
                if blocks > 1:
                    data += os.pread(fd, (blocks - 1) * BLOCK, (start + 1) * BLOCK)
                if zlib.crc32(data[8:end]) != crc:
                    continue  # torn by a crash inside its write, or stale bytes
                try:
                    rows, acks, carry = decode(data[_HEAD.size:end])
                except (ValueError, struct.error) as exc:  # UnicodeDecodeError is one
                    log.warning("journal %s: block %d: %s", self.path, start, exc)
                    continue
                found.append((tag, number, oldest, start, blocks, rows, acks, carry))
            _drop_cache(fd)
        finally:
            os.close(fd)
        if not found:
            return out
        found.sort(key=lambda f: f[1])
        mine = self.tag if not any_spool else found[-1][0]
        found = [f for f in found if f[0] == mine]
        if not found:
            return out
        _, newest_number, newest_oldest, start, blocks = found[-1][:5]
        self._next_number = newest_number + 1
        self._pos = (start + blocks) % self.blocks if self.blocks else 0
        self.fenced = not found[-1][5] and newest_oldest == newest_number  # a clean stop
        out.records = len(found)
        live: dict[int, Row] = {}
        for _, number, _oldest, _start, _blocks, rows, acks, carry in found:
            for device, seq in carry.items():
                out.seqs[device] = max(seq, out.seqs.get(device, 0))
            for r in rows:
                out.seqs[r.device] = max(r.seq, out.seqs.get(r.device, 0))
                out.top_id = max(out.top_id, r.id)
            if number < newest_oldest:
                continue  # every reading in it had left memory when the newest was written
            # An ack counts for the readings of the records before its own (an ack of an
            # id no record has yet names no reading: one handed over, then never stored).
            if acks and live:
                for i in [i for i in live if _in_runs(i, acks)]:
                    del live[i]
            for r in rows:
                live[r.id] = r
        out.rows = [live[i] for i in sorted(live)]
        return out

    def open(self) -> None:
        """Open the ring for writing, making it (zeros, synced) if it is missing or
        not the right size. Call after `recover`, and after what it found is safe
        elsewhere: this run's records then overwrite the old ones."""
        size = self.blocks * BLOCK
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, 0)
                zeros = bytes(BLOCK)  # block by block: see _drop_cache
                for at in range(0, size, BLOCK):
                    if os.pwrite(fd, zeros, at) != BLOCK:
                        raise OSError(f"short write to {self.path}")
                os.fsync(fd)
                _sync_dir(self.path.parent)
                _drop_cache(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if self._pos >= self.blocks:
            self._pos = 0

    def moved(self) -> str | None:
        """None while the path names the open ring; else what happened to it."""
        if self._fd is None:
            return None
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return "deleted"
        except OSError as exc:
            log.debug("cannot stat %s: %s", self.path, exc)
            return None
        if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            return None
        return "replaced by another file"

    def start_anew(self, seqs: dict[str, int]) -> None:
        """Make the ring again at its path (the open one was deleted or replaced: a
        start after a crash would not find it), once nothing is only in it. A file
        found at the path is moved aside. Every device's seq goes with the records."""
        self.close()
        if self.path.exists():
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            aside = self.path.with_name(f"{self.path.name}.replaced-{stamp}")
            os.replace(self.path, aside)
            log.error("journal %s was replaced by another file; moved that file aside to %s",
                      self.path, aside)
        self._ring.clear()
        self._latest.clear()
        self._carry = dict(seqs)
        self._pos = 0
        self.fenced = False
        self.open()

    # -- writing -----------------------------------------------------------------
    def append(self, rows: Sequence[RowLike], acks: list[tuple[int, int]],
               release: Callable[[int], None], oldest_held: Callable[[], int | None]) -> None:
        """Write one record (no fsync: the owner has the file synced). Before a block
        is overwritten, `release(last_id)` must take every reading with an id up to
        `last_id` out of memory into SQLite (or raise: nothing is written then).
        `oldest_held()` is the lowest id still only in memory after that, or None."""
        if self._fd is None:
            raise OSError(f"journal {self.path} is not open")
        while True:
            body = encode(rows, acks, self._carry)
            need = _blocks_for(len(body))
            if need > self.max_record_blocks:
                raise RecordTooLarge(f"a record of {need} blocks does not fit the journal")
            start = self._pos
            if start + need > self.blocks:
                self._make_room(start, self.blocks, release)  # the tail is left behind
                self._pos = start = 0
            # A device whose latest row leaves with an old record goes into `carry`,
            # which makes this body longer: encode it again (and make room for that).
            if not self._make_room(start, start + need, release):
                break
        number = self._next_number
        last_id = rows[-1].id if rows else (self._ring[-1].last_id if self._ring else 0)
        lowest = oldest_held()
        oldest = number
        if lowest is not None:
            for rec in self._ring:
                if rec.last_id >= lowest:
                    oldest = rec.number
                    break
        head = _HEAD.pack(_MAGIC, 0, number, self.tag, oldest, need, len(body))
        record = bytearray(need * BLOCK)
        record[:len(head)] = head
        record[len(head):len(head) + len(body)] = body
        struct.pack_into("<I", record, 4, zlib.crc32(memoryview(record)[8:len(head) + len(body)]))
        if os.pwrite(self._fd, record, start * BLOCK) != len(record):
            raise OSError(f"short write to {self.path}")
        devices = tuple({r.device: None for r in rows})
        self._ring.append(_Record(number, start, need, last_id, devices))
        for device in devices:
            self._latest[device] = number
            self._carry.pop(device, None)
        self._next_number = number + 1
        self.fenced = not rows and oldest == number
        self._pos = (start + need) % self.blocks
        self.records_written += 1

    def _make_room(self, start: int, end: int, release: Callable[[int], None]) -> bool:
        """Blocks start..end are about to be overwritten (or left behind at the end of a
        lap): every record of this run on them goes, once its readings are safe. True if
        a device's seq went into `carry`."""
        ring = self._ring
        carried = False
        while ring and _overlaps(ring[0], start, end):
            rec = ring[0]
            release(rec.last_id)
            ring.popleft()
            for device in rec.devices:
                if self._latest.get(device) == rec.number:
                    # Its latest row leaves the ring: the records from now on say its seq.
                    del self._latest[device]
                    self._carry[device] = self._seq_of(device)
                    carried = True
        return carried

    @property
    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _drop_cache(fd: int) -> None:
    """Let the kernel forget the file's clean pages. Kernels with large folios in the
    page cache (ext4 since 6.11) read a file in folios of up to 2 MiB, and a later 4 KiB
    write into one dirties (and counts, and writes back) the whole folio: measured
    65 KiB per record here. Pages a block-sized write makes anew are single pages."""
    _advise(fd, "POSIX_FADV_DONTNEED")


def _advise(fd: int, advice: str) -> None:
    """posix_fadvise where the system has it (Linux); a hint, so a failure is no error."""
    fadvise = getattr(os, "posix_fadvise", None)
    if fadvise is None:
        return
    try:
        fadvise(fd, 0, 0, getattr(os, advice))
    except OSError as exc:
        log.debug("posix_fadvise(%s): %s", advice, exc)


def _blocks_for(body_size: int) -> int:
    return -(-(_HEAD.size + body_size) // BLOCK)


def _in_runs(i: int, runs: list[tuple[int, int]]) -> bool:
    return any(first <= i <= last for first, last in runs)


def _overlaps(rec: _Record, start: int, end: int) -> bool:
    return rec.start < end and start < rec.start + rec.blocks


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
