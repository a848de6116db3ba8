"""Where accepted readings wait for the broker: SQLite (WAL) on disk, or memory.

Both spools keep rows in acceptance order with an increasing id, the last
`seq` given to each device, and enforce the capacity policy. The SQLite spool
is written by one thread (the outbox's spooler) and read by another (the
publisher) through separate connections, which WAL lets run side by side.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from gateway.outbox.faults import (
    SpoolState,
    SpoolWriteError,
    classify,
    file_size_limit,
    free_bytes,
)
from gateway.outbox.handover import HandoverNote, boot_id
from gateway.outbox.journal import BLOCKS as JOURNAL_BLOCKS
from gateway.outbox.journal import BurstJournal, RecordTooLarge
from gateway.outbox.seqlease import LEASE_BLOCK, SeqLease
from gateway.outbox.walsync import WalSyncer
from gateway.slots import SlotsRecord

__all__ = [
    "MemorySpool",
    "Message",
    "NewRow",
    "Spool",
    "SpoolError",
    "SpoolState",
    "SpoolWriteError",
    "SqliteSpool",
    "WriteResult",
    "row_bytes",
]

log = logging.getLogger("gateway.spool")

WhenFull = Literal["drop_oldest", "reject_new"]


class Message(SlotsRecord):
    """A spooled reading, ready to publish."""

    __slots__ = ("id", "topic", "payload", "device", "seq")

    def __init__(self, id: int, topic: str, payload: bytes, device: str = "",
                 seq: int = 0) -> None:
        self.id = id
        self.topic = topic
        self.payload = payload
        self.device = device
        self.seq = seq


class NewRow(SlotsRecord):
    __slots__ = ("device", "topic", "seq", "payload")

    def __init__(self, device: str, topic: str, seq: int, payload: bytes) -> None:
        self.device = device
        self.topic = topic
        self.seq = seq
        self.payload = payload


class WriteResult(SlotsRecord):
    __slots__ = ("stored", "dropped", "rejected", "deleted")

    def __init__(self) -> None:
        self.stored: list[Message] = []
        self.dropped = 0  # oldest rows removed to make room
        self.rejected = 0  # new rows refused (reject_new)
        self.deleted = 0  # acknowledged rows deleted


#: Told the new rows of a transaction once their ids are settled and before its COMMIT
#: (and its fsync): before the transaction when no capacity policy can act on it, else
#: after the policy chose. The publisher sends them while the transaction reaches the
#: disk. If it then fails, their ids are never used again (SqliteSpool._transaction).
Staged = Callable[[list[Message]], None]


class Spool(Protocol):
    def next_due(self) -> float | None: ...
    def flush_due(self, now: float | None = None) -> int: ...
    def release_memory(self) -> None: ...
    def last_seqs(self) -> dict[str, int]: ...
    def write(self, rows: list[NewRow], delete_ids: list[int],
              staged: Staged | None = None) -> WriteResult: ...
    def delete(self, ids: list[int]) -> int: ...
    def insert(self, rows: list[NewRow], staged: Staged | None = None) -> WriteResult: ...
    def check_file(self) -> str | None: ...
    def recreate(self) -> None: ...
    def fetch(self, after_id: int, limit: int) -> list[Message]: ...
    def count(self) -> int: ...
    def size_bytes(self) -> int: ...
    def watch_threads(self, on_error: Callable[[str], None]) -> None: ...
    def close(self) -> None: ...


class SpoolError(Exception):
    """The spool file cannot be opened or written (a directory missing, no permission, ...)."""


class _Capacity:
    """Shared capacity bookkeeping: how many of n new rows fit, and what must go."""

    def __init__(self, max_messages: int, max_bytes: int, when_full: WhenFull) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.when_full = when_full

    def fits(self, rows: list[NewRow], count: int, nbytes: int) -> int:
        """Under reject_new: how many of `rows` (a prefix) fit beside `count` rows of `nbytes`."""
        kept = 0
        for r in rows:
            size = row_bytes(r)
            if count + kept + 1 > self.max_messages or nbytes + size > self.max_bytes:
                break
            kept += 1
            nbytes += size
        return kept


# No AUTOINCREMENT: its sqlite_sequence row is one more page in every commit's WAL
# frames. Ids come from the spool's own counter instead (see SqliteSpool._next_id).
# `seqs` holds a device's last seq only once no row of that device is left in
# `messages` (and for every device at a clean close): while rows are there, the
# newest of them says it, and a commit need not touch another page for it. Both small
# tables are WITHOUT ROWID (new files): keyed by text, a rowid table keeps a second
# b-tree for the key, one more WAL frame in every commit that writes a seq.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS seqs (device TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


# Rows go in as multi-row INSERTs: the sqlite3 module releases the GIL for every
# statement step, so one step per row lets every other thread cut in per row. Batches
# are cut into a few fixed sizes so each statement text is prepared once and cached.
_CHUNK_SIZES = (256, 64, 16, 4, 1)
_DELETE_CHUNK = 500


def _tell_staged(staged: Staged, stored: list[Message]) -> None:
    """Hand staged rows on. A failure of the listener must not abort the transaction:
    it is logged, the rows are stored all the same, and the publisher finds them in the
    spool at its next round."""
    try:
        staged(stored)
    except Exception:
        log.exception("spool: handing staged rows to the publisher failed")


def _chunks(n: int) -> list[tuple[int, int]]:
    """(start, size) pieces of n rows, sizes from _CHUNK_SIZES, largest first."""
    out: list[tuple[int, int]] = []
    start = 0
    for size in _CHUNK_SIZES:
        while n - start >= size:
            out.append((start, size))
            start += size
    return out


_INSERT_SQL: dict[tuple[str, int], str] = {}
_UPSERT_SQL: dict[int, str] = {}


def _insert_sql(n: int, verb: str = "INSERT") -> str:
    sql = _INSERT_SQL.get((verb, n))
    if sql is None:
        sql = _INSERT_SQL[verb, n] = (
            f"{verb} INTO messages (id, device, topic, seq, payload) VALUES "
            + ",".join(["(?, ?, ?, ?, ?)"] * n)
        )
    return sql


def _upsert_seqs(db: sqlite3.Connection, seqs: list[tuple[str, int]]) -> None:
    """Set these devices' rows in `seqs` (inside the caller's transaction)."""
    for start, size in _chunks(len(seqs)):
        db.execute(_upsert_seq_sql(size), [v for item in seqs[start:start + size] for v in item])


def _upsert_seq_sql(n: int) -> str:
    sql = _UPSERT_SQL.get(n)
    if sql is None:
        sql = _UPSERT_SQL[n] = (
            "INSERT INTO seqs (device, seq) VALUES " + ",".join(["(?, ?)"] * n)
            + " ON CONFLICT(device) DO UPDATE SET seq = excluded.seq"
        )
    return sql


#: SQLite's bookkeeping per row beyond the payload, topic and device (record header,
#: rowid, seq, cell pointer; measured ~18 bytes, rounded up), so `max_bytes` bounds the file.
ROW_OVERHEAD = 24

#: WAL limits, so the spool's files stay within max_bytes + a small margin: SQLite
#: checkpoints after this many WAL pages (default 1,000: ~4 MB) and cuts the WAL file
#: back to journal_size_limit when it starts over. The WAL kept at that size is
#: also room for acknowledgements to commit when the disk is full.
WAL_AUTOCHECKPOINT_PAGES = 128
WAL_SIZE_LIMIT = 512 * 1024

#: Page size of a new spool file (see SqliteSpool._connect).
PAGE_SIZE = 2048

#: SQLite's page cache per connection (KiB; its default is 2,000). The spool appends at
#: one end and deletes at the other: a small cache serves that, and a long broker
#: outage no longer leaves each connection holding 2 MB of pages it read once.
CACHE_KIB = 512

#: With the burst journal (gateway.outbox.journal), how long a reading the broker has not
#: acknowledged stays only there (and in memory) before it is written to SQLite too.
JOURNAL_HOLD = 2.0

#: How often the spooler checks that its path still names the open file.
IDENTITY_CHECK_INTERVAL = 5.0


def row_bytes(row: NewRow | Message) -> int:
    """What a row counts against `max_bytes`: payload, topic, device and SQLite's overhead."""
    return len(row.payload) + len(row.topic) + len(row.device) + ROW_OVERHEAD


def margin_bytes(page_size: int = 4096) -> int:
    """How far the spool's files may go beyond max_bytes: the WAL (its limit, or one
    auto-checkpoint period plus a commit of 500 rows), the -shm index, the schema and
    seq pages and one partly emptied leaf at the head of the table."""
    return max(WAL_SIZE_LIMIT, WAL_AUTOCHECKPOINT_PAGES * page_size + 64 * page_size) \
        + 32 * 1024 + 8 * page_size


#: What a row counts against max_bytes, in SQL (`row_bytes` without ROW_OVERHEAD).
_ROW_SIZE = "LENGTH(payload) + LENGTH(topic) + LENGTH(device)"
_SIZE_SQL = f"SELECT COUNT(*), COALESCE(SUM({_ROW_SIZE}), 0) + {ROW_OVERHEAD} * COUNT(*) FROM messages"
# The same per device, with the rows' highest seq: a delete may take the device's latest,
# which must then outlive its row (_transaction).
_DEVICE_SIZE_SQL = (f"SELECT device, COUNT(*), SUM({_ROW_SIZE}) + {ROW_OVERHEAD} * COUNT(*), "
                    "MAX(seq) FROM messages")


_IDS = "(SELECT value FROM json_each(?))"
_UNCOUNT_IDS_SQL = f"{_DEVICE_SIZE_SQL} WHERE id IN {_IDS} GROUP BY device"
_DELETE_IDS_SQL = f"DELETE FROM messages WHERE id IN {_IDS}"
_UNCOUNT_RANGE_SQL = f"{_DEVICE_SIZE_SQL} WHERE id BETWEEN ? AND ? GROUP BY device"
_DELETE_RANGE_SQL = "DELETE FROM messages WHERE id BETWEEN ? AND ?"
#: Acked ids in at most this many runs of consecutive ids are deleted by range.
_RANGE_RUNS = 4
#: The newest rows' device, size and seq are kept by id (`SqliteSpool._known`), so the
#: acks of the last bursts are taken off the counts without a query per commit.
_KNOWN_ROWS = 512
#: While this much beyond the margin is free, `_limit_growth` leaves max_page_count as
#: it is until the free space moves by _FREE_SLACK: no commit can come near the cap.
_ROOM_QUICK = 16 * 1024 * 1024
_FREE_SLACK = 256 * 1024


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    """`ids` as (first, last) runs of consecutive ids, ascending; duplicates merge."""
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return [(first, last) for first, last in runs]


class SqliteSpool(_Capacity):
    """The durable spool: a SQLite database in WAL mode.

    Acknowledged rows are deleted in the transaction of the next readings (`write`)
    and, when that fails, in one of their own (`delete`), so they free space even
    while inserts fail (a full disk). Every failed transaction is rolled back
    if SQLite left one open, its error classified (`faults.classify`) and the counts
    re-read from the file, so `count()`/`size_bytes()` always match the disk.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_messages: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        when_full: WhenFull = "drop_oldest",
        sync: Literal["full", "normal"] = "full",
        lease_block: int = LEASE_BLOCK,
        write_delay: float = 0.0,
        journal: bool = False,
        journal_blocks: int = JOURNAL_BLOCKS,
    ) -> None:
        super().__init__(max_messages, max_bytes, when_full)
        self.path = Path(path)
        self.sync = sync
        # buffer.write_delay (the SD-card mode): accepted rows wait here, in id order,
        # with the monotonic time they are due on disk; acked before then, never written.
        self.write_delay = write_delay
        # buffer.journal (sync: full): the same, but each burst is also written to the
        # burst journal and synced, so nothing held is lost (gateway.outbox.journal).
        self.journal_path = Path(f"{self.path}.journal")
        self._journal: BurstJournal | None = None
        self._journal_blocks = journal_blocks
        self._journal_found = False  # the journal had records of this spool at open
        self._journal_wanted = journal and sync == "full" and write_delay <= 0
        self._hold_for = write_delay if write_delay > 0 else (
            JOURNAL_HOLD if self._journal_wanted else 0.0)
        self._held: OrderedDict[int, tuple[Message, float]] = OrderedDict()
        self._held_bytes = 0
        self._held_lock = threading.RLock()  # the spooler (hold, flush) vs fetch
        self.moved_aside: Path | None = None
        self.recreated = 0  # times the file was found missing/replaced and written anew
        self._reader_lock = threading.Lock()
        self._reader_db: sqlite3.Connection | None = None
        self.lease = SeqLease(Path(f"{self.path}.seq"), lease_block)
        self.handover = HandoverNote(Path(f"{self.path}.staged"))
        self._boot = boot_id()
        self._last_run: dict[str, str] = {}  # the marks a run that did not close left
        # sync: full fsyncs the WAL off the spooler's path (gateway.outbox.walsync) until
        # an fdatasync fails; then each COMMIT syncs inline again (synchronous=FULL).
        self._inline_sync = sync != "full"
        self._inline_synced = False  # the writer was switched to synchronous=FULL
        self._syncer: WalSyncer | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open_writer()
            except sqlite3.OperationalError:
                raise  # cannot open or lock (permissions, read-only fs): not corruption
            except sqlite3.DatabaseError as exc:
                self.moved_aside = self._move_aside(exc)
                self._db = self._open_writer()
            self.spool_id = self._probe_write()
            if self._journal_wanted or self.journal_path.exists():
                # Also when the journal is off now: the last run may have had it on.
                self._restore_journal()
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", None):
                reason += f" [{exc.sqlite_errorname}]"
            raise SpoolError(f"cannot open the spool {self.path} for writing: {reason}") from exc
        self.page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._page_cap = 0  # max_page_count as last set (see _limit_growth)
        self._growth_seen: tuple[int, int | None] | None = None  # (free, fsize) then
        # Why the file may not grow now: ("disk" | "fsize" | "max_bytes", bytes).
        self._growth_limit: tuple[str, int] | None = None
        self._dir = self.path.parent
        self._margin = margin_bytes(self.page_size)
        self._bytes_cap = (self.max_bytes + self._margin) // self.page_size
        self._identity = self._stat_identity()
        self._recount()
        self._next_id = self._first_free_id()
        self._warn_if_little_space()
        self.lease.load()
        stored = self._stored_seqs()
        self._seqs = self.lease.start_seqs(self.spool_id, stored)
        self._note_last_run(stored)
        try:
            self.lease.extend(self.spool_id, self._seqs)
        except OSError as exc:  # a full disk at start: retried before the next insert
            log.warning("cannot write the seq lease %s: %s", self.lease.path, exc)
        if self._journal_wanted:
            self._open_journal()
        if not self._inline_sync:  # last: a spool that failed to open leaves no thread
            synced = self.journal_path if self._journal is not None else Path(f"{self.path}-wal")
            self._syncer = WalSyncer(synced, weakref.WeakMethod(self._sync_failed))
            self._synced_commit()  # the commits made while opening

    # -- opening ---------------------------------------------------------------
    def _warn_if_little_space(self) -> None:
        free = free_bytes(self.path.parent)
        room = self.max_bytes + margin_bytes(self.page_size)
        if free is not None and free + self.files_bytes() < room:
            log.warning(
                "buffer.max_bytes allows the spool %d MiB (+%d KiB of WAL), but only %d MiB "
                "are free on the file system of %s: the disk would fill first (readings then "
                "wait in memory, and are refused once that is full)", self.max_bytes >> 20,
                margin_bytes(self.page_size) >> 10, (free + self.files_bytes()) >> 20,
                self.path.parent)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5)
        # A new file only (SQLite ignores it for an existing one). The kernel counts a
        # commit's WAL frames in whole 4 KiB pages of its cache, each dirtied again after
        # every fsync: 2 KiB pages hold ten readings in one frame, so a commit usually
        # dirties one cache page (measured: 1 KiB 10.3x, 2 KiB 7.4x, 4 KiB 9.9x the
        # payload; docs/small-pi.md).
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous()}")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return db

    def _synchronous(self) -> str:
        """FULL only where the COMMIT itself must sync: after the syncer failed, and with
        the journal, whose syncer syncs the journal (SQLite is written rarely then)."""
        return "FULL" if self.sync == "full" and (
            self._inline_sync or self._journal_wanted) else "NORMAL"

    def _sync_failed(self, exc: OSError) -> None:
        """From the syncer thread: commit with an fsync inside each transaction again,
        so the next one that cannot reach the disk fails where it is retried."""
        self._inline_sync = True

    def _synced_commit(self) -> None:
        """A COMMIT returned: with sync: full, have the WAL synced (or sync it inline)."""
        if self._syncer is None or self._inline_synced or self._journal_wanted:
            return  # with the journal SQLite syncs inside each COMMIT (rare, see _hold)
        if self._inline_sync:
            # The syncer failed: this and every later COMMIT syncs inside its transaction
            # (the first one also covers the frames the failed sync left behind).
            self._db.execute("PRAGMA synchronous=FULL")
            self._inline_synced = True
            return
        self._syncer.ask()

    def watch_threads(self, on_error: Callable[[str], None]) -> None:
        """`on_error(thread name)` for each exception a round of the spool's own thread
        (the syncer) survives."""
        if self._syncer is not None:
            self._syncer.on_thread_error = lambda: on_error("spool-syncer")

    def wait_synced(self, timeout: float | None = None) -> bool:
        """True once every commit so far is on disk (sync: full; at once otherwise)."""
        return self._syncer is None or self._syncer.wait(None, timeout)

    def _open_writer(self) -> sqlite3.Connection:
        db = self._connect()
        try:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                raise sqlite3.DatabaseError(f"cannot use WAL mode (got {mode})")
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
            db.executescript(_SCHEMA)
            cols = [r[1] for r in db.execute("PRAGMA table_info(messages)")]
            if cols != ["id", "device", "topic", "seq", "payload"]:
                raise sqlite3.DatabaseError(f"unexpected schema: {cols}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _probe_write(self) -> str:
        """A real write at open (a read-only file or directory fails here, not later);
        returns the spool's id, made on first use (see seqlease). In the same transaction:
        the marks of a run that did not close are read (`_note_last_run`), and this run's
        mark, this boot's id, is set until `close()` (gateway.outbox.handover)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'spool_id'").fetchone()
            spool_id = row[0] if row else uuid.uuid4().hex
            self._last_run = {str(k): str(v) for k, v in db.execute(
                "SELECT key, value FROM meta WHERE key IN ('open_boot', 'delayed_open')")}
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('spool_id', ?), "
                       "('open_boot', ?)", (spool_id, self._boot))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return str(spool_id)

    def _move_aside(self, exc: Exception) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, Path(f"{aside}{suffix}"))
        log.error(
            "spool %s is unreadable (%s); moved it aside to %s and started a fresh spool",
            self.path, exc, aside,
        )
        return aside

    def files(self) -> list[Path]:
        return [self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]

    def files_bytes(self) -> int:
        """What the spool takes on disk: its SQLite files and the journal (if in use)."""
        total = 0
        journal = [self.journal_path] if self._journal is not None else []
        for f in [*self.files(), *journal]:
            try:
                total += f.stat().st_size
            except OSError:
                pass
        return total

    # -- the file behind the path -----------------------------------------------------
    def _stat_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def check_file(self) -> str | None:
        """None while the path still names the open file; else what happened to it.
        (The handover note beside it is checked too, and written anew at its path.)"""
        self.handover.check()
        self._check_journal()
        now = self._stat_identity()
        if now == self._identity:
            return None
        return "deleted" if now is None else "replaced by another file"

    def recreate(self) -> None:
        """The path no longer names the open file: write what the open file holds
        (every row, the seqs, the spool id) to the path again and carry on there.

        The open connections still read the old file, deleted or not, so nothing
        accepted is lost. A foreign file found at the path is moved aside.
        """
        what = self.check_file()
        if what is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.recreate-tmp")
        tmp.unlink(missing_ok=True)
        copy = sqlite3.connect(tmp)
        try:
            self._db.backup(copy)
        finally:
            copy.close()
        with self._reader_lock:
            if self._reader_db is not None:
                self._reader_db.close()
                self._reader_db = None
            # Closing the last connection removes OUR -wal/-shm by name: before anything
            # new appears at the path (a stale WAL would be replayed into the new file).
            self._db.close()
            if self._stat_identity() is not None:
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
                aside = self.path.with_name(f"{self.path.name}.replaced-{stamp}")
                os.replace(self.path, aside)
                log.error("spool %s was replaced by another file while running; moved that "
                          "file aside to %s", self.path, aside)
            os.replace(tmp, self.path)
            self._db = self._open_writer()
            if self._syncer is not None:
                self._syncer.reopen()  # a new file, a new WAL
            self._page_cap = 0
            self._growth_seen = None
            self._identity = self._stat_identity()
        self.recreated += 1
        self._recount()
        log.warning("spool %s written anew from the open file (%d readings kept)",
                    self.path, self._count)

    def _reader(self) -> sqlite3.Connection:
        if self._reader_db is None:
            self._reader_db = self._connect()
        return self._reader_db

    def _stored_seqs(self) -> dict[str, int]:
        """Each device's last seq: the newest of its rows, else the `seqs` table."""
        seqs = {str(d): int(q) for d, q in self._db.execute("SELECT device, seq FROM seqs")}
        for d, q in self._db.execute("SELECT device, MAX(seq) FROM messages GROUP BY device"):
            seqs[d] = max(int(q), seqs.get(d, 0))
        return seqs

    def _note_last_run(self, stored: dict[str, int]) -> None:
        """Where seq continues after a run that did not close (gateway.outbox.handover):

        - it held readings in memory (buffer.write_delay): those acknowledged in time never
          reached the file, nor their seqs: above the lease;
        - the machine restarted since (another boot id): commits after the last fsync may
          be gone, and their readings may have reached the broker: above the lease;
        - the process died (the same boot): every COMMIT is in the file; continue above the
          seqs it handed over ahead of their COMMIT, which the page cache kept too.
        Seqs above the file's own (`stored`; raised so, or above the lease of a replaced
        spool) are written to `seqs` at once: should this run die too before it commits a
        reading of that device, the next start still finds them. Then this run's
        write_delay mark is set or cleared."""
        last = self._last_run
        if last and self.lease.spool_id == self.spool_id:
            if "delayed_open" in last:
                why = ("kept readings in memory (buffer.write_delay) and did not stop cleanly; "
                       "those the broker had not acknowledged are lost")
            elif not self._boot or last.get("open_boot") != self._boot:
                why = ("did not stop cleanly and the machine has started again since (a power "
                       "cut?); readings committed after the last fsync may be lost, and may "
                       "have reached the broker")
            else:
                why = ""
                for device, seq in self.handover.load(self.spool_id).items():
                    if seq > self._seqs.get(device, 0):
                        log.warning("spool %s: %s's seqs up to %d were handed to the "
                                    "publisher before a crash and never committed: seq "
                                    "continues above them", self.path, device, seq)
                        self._seqs[device] = seq
            if why:
                for device, ceiling in self.lease.ceilings.items():
                    self._seqs[device] = max(self._seqs.get(device, 0), ceiling)
                log.warning("spool %s: the last run %s; seq continues above the lease %s so "
                            "no seq is given twice", self.path, why, self.lease.path)
        raised = [(d, q) for d, q in self._seqs.items() if q > stored.get(d, 0)]
        want = self.write_delay > 0
        if raised or want != ("delayed_open" in last):
            self._db.execute("BEGIN IMMEDIATE")
            _upsert_seqs(self._db, raised)
            if want:
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) "
                                 "VALUES ('delayed_open', '1')")
            else:
                self._db.execute("DELETE FROM meta WHERE key = 'delayed_open'")
            self._db.execute("COMMIT")
            self._synced_commit()

    def _first_free_id(self) -> int:
        """Above every id in the table and every id handed out before a clean close
        (and, in files made before ids were ours, sqlite_sequence's)."""
        top = int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0])
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        if row is not None:
            top = max(top, int(row[0]) - 1)
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
                            ).fetchone():
            seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'"
                                   ).fetchone()
            if seq is not None:
                top = max(top, int(seq[0]))
        return top + 1

    # -- transactions -------------------------------------------------------------
    def _recount(self) -> None:
        per_device: dict[str, int] = {}
        count = nbytes = 0
        for device, n, size, _ in self._db.execute(f"{_DEVICE_SIZE_SQL} GROUP BY device"):
            per_device[device] = int(n)
            count += int(n)
            nbytes += int(size)
        self._count: int = count
        self._bytes: int = nbytes
        self._rows_of: dict[str, int] = per_device
        # Rows known to be in the table as committed: id -> (device, row_bytes, seq),
        # the newest _KNOWN_ROWS of them. Emptied whenever the counts are re-read, so it
        # never names a row that is not there (`_delete` counts from it).
        self._known: OrderedDict[int, tuple[str, int, int]] = OrderedDict()

    def _failed(self, exc: BaseException) -> SpoolWriteError:
        """After a failed transaction: roll back what SQLite left open (a failed COMMIT
        may have rolled back already), re-read the counts, say what happened."""
        db = self._db
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error as rb:
            log.debug("spool rollback after %s: %s", exc, rb)
        try:
            self._recount()
        except sqlite3.Error as rc:
            log.debug("spool recount after %s: %s", exc, rc)
        return classify(exc, self.files(), getattr(self, "page_size", 4096))

    # -- the Spool protocol ----------------------------------------------------------
    def last_seqs(self) -> dict[str, int]:
        return dict(self._seqs)

    def write(self, rows: list[NewRow], delete_ids: list[int],
              staged: Staged | None = None) -> WriteResult:
        """Delete acknowledged rows and insert `rows` in ONE transaction (one fsync, and
        the pages both touch are written once). If it fails, nothing of it happened:
        the caller may then delete on its own (`delete`), which frees space on a full
        disk where an insert cannot commit. `staged` is told the new rows before the
        COMMIT (see `Staged`; not for held rows: they need no disk before they are sent)."""
        if self._journal is not None and self._inline_sync:
            self._journal_failed("an fdatasync of it failed")
        if self._hold_for <= 0 and self._held and rows:
            # The journal failed with readings held that SQLite did not take then: they
            # go first (or, raising, nothing new is accepted), so the order holds.
            self._flush_held()
        if self._hold_for > 0:
            return self._hold(rows, delete_ids, staged)
        return self._transaction(rows, delete_ids, staged=staged)

    def delete(self, ids: list[int]) -> int:
        """Delete acknowledged rows in a transaction of their own; how many there were."""
        if not ids:
            return 0
        return self.write(rows=[], delete_ids=ids).deleted

    def insert(self, rows: list[NewRow], staged: Staged | None = None) -> WriteResult:
        """One transaction: make room by the capacity policy, insert `rows`."""
        return self.write(rows, [], staged)

    # -- buffer.write_delay: rows held in memory until due --------------------------
    def _hold(self, rows: list[NewRow], delete_ids: list[int],
              staged: Staged | None = None) -> WriteResult:
        """Accept `rows` into memory (ids and seqs given now, as on disk) and forget
        acknowledged ones; only rows acknowledged too late are deleted on disk. Rows
        that are due are written first: if that fails, nothing new is accepted (the
        caller keeps `rows` waiting, without seq, as when an insert fails)."""
        result = WriteResult()
        with self._held_lock:
            on_disk: list[int] = []
            for i in delete_ids:
                held = self._held.pop(i, None)
                if held is None:
                    on_disk.append(i)
                else:
                    self._held_bytes -= row_bytes(held[0])
                    result.deleted += 1
            if rows and self._journal is not None and self._count > len(on_disk):
                # A backlog stays on disk (the broker is away, or catching up): these are
                # sent after it, so holding them for an acknowledgement only adds a block
                # of journal to the commit they get anyway. (Once this write's acks take
                # the last rows off the disk, bursts are held again.)
                return self._to_sqlite(rows, on_disk, result)
            if on_disk:
                result.deleted += self._transaction([], on_disk).deleted
            if not rows:
                if self._journal is not None and delete_ids:
                    self._journal_write([], delete_ids)  # acks alone (rare: they ride along)
                return result
            self.flush_due()
            if self.when_full == "reject_new":
                keep = self.fits(rows, self.count(), self.size_bytes())
                result.rejected = len(rows) - keep
                rows = rows[:keep]
            try:
                self.lease.extend(self.spool_id, {r.device: r.seq for r in rows})
            except OSError as exc:
                raise self._failed(exc) from exc
            due = time.monotonic() + self._hold_for
            first = self._next_id
            msgs = [Message(first + i, r.topic, r.payload, r.device, r.seq)
                    for i, r in enumerate(rows)]
            journaled = self._journal is not None
            if journaled and not self._journal_write(msgs, delete_ids, sync=False):
                # Too large a burst for the journal, or the journal failed.
                return self._to_sqlite(rows, [], result)
            for m in msgs:
                self._held[m.id] = (m, due)
                self._held_bytes += row_bytes(m)
                self._seqs[m.device] = m.seq
                result.stored.append(m)
            self._next_id += len(rows)
        if journaled and self._syncer is not None:
            # In the page cache now (a SIGKILL cannot take them): to the publisher first,
            # then the syncer's wake-up (measured: p50 +0.25 ms the other way round).
            if staged is not None and msgs:
                _tell_staged(staged, msgs)
            self._syncer.ask()
        return result

    def _to_sqlite(self, rows: list[NewRow], on_disk: list[int], result: WriteResult
                   ) -> WriteResult:
        """With the journal, a burst that goes to SQLite after all: what is held first
        (held rows are newer than every row on disk), then the burst with the acks of
        rows on disk, in one transaction. In between, a fence in the journal: a start
        after a crash must not take rows from it that SQLite has, or had and deleted."""
        self._flush_held()
        self._fence()
        written = self._transaction(rows, on_disk)
        written.deleted += result.deleted
        return written

    # -- buffer.journal: each burst in a block of the journal -------------------------
    def _restore_journal(self) -> None:
        """At open: what only the journal holds (a run that did not close: readings
        neither acknowledged nor in SQLite, and seqs) goes into SQLite, in one
        transaction synced before the journal is written again. With the journal off
        now (buffer.journal, sync or write_delay changed since), it is then removed."""
        journal = BurstJournal(self.journal_path, self.spool_id, self._journal_blocks,
                               lambda device: self._seqs.get(device, 0))
        try:
            found = journal.recover(any_spool=self.moved_aside is not None)
        except OSError as exc:
            # Left as it is (a later start reads it again); this run does without it.
            if self._journal_wanted:
                self._hold_for = 0.0
            log.error("spool: cannot read the journal %s (%s); readings only it holds (if "
                      "the last run did not stop cleanly) are not taken from it, and every "
                      "burst is committed to %s instead", self.journal_path, exc, self.path)
            return
        if self._journal_wanted:
            self._journal = journal
            self._journal_found = found.records > 0
        stored = self._stored_seqs()
        if found.rows or found.top_id >= self._first_free_id() or any(
                q > stored.get(d, 0) for d, q in found.seqs.items()):
            # (After a clean stop the file already says all of it: nothing to write.)
            db = self._db
            db.execute("PRAGMA synchronous=FULL")  # on disk before the journal changes
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = found.rows
                cur = db.cursor()
                for start, size in _chunks(len(rows)):
                    cur.execute(_insert_sql(size, "INSERT OR IGNORE"), [
                        v for r in rows[start:start + size]
                        for v in (r.id, r.device, r.topic, r.seq, r.payload)])
                for device, seq in found.seqs.items():
                    db.execute("INSERT INTO seqs (device, seq) VALUES (?, ?) ON CONFLICT(device)"
                               " DO UPDATE SET seq = max(seq, excluded.seq)", (device, seq))
                db.execute("INSERT INTO meta (key, value) VALUES ('next_id', ?) ON CONFLICT(key)"
                           " DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded."
                           "value AS INTEGER))", (str(found.top_id + 1),))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.execute(f"PRAGMA synchronous={self._synchronous()}")
            if rows:
                log.warning("spool %s: the last run did not stop cleanly; %d readings the "
                            "broker had not acknowledged were taken from the journal %s",
                            self.path, len(rows), self.journal_path)
        if not self._journal_wanted:
            try:
                self.journal_path.unlink()
            except OSError as exc:
                log.warning("spool: cannot remove the journal %s (%s), which buffer.journal "
                            "no longer uses: the next start reads it again (what it held is "
                            "in %s)", self.journal_path, exc, self.path)
                return
            log.info("spool: buffer.journal is not in use; removed %s (what it held is in "
                     "%s)", self.journal_path, self.path)

    def _open_journal(self) -> None:
        journal = self._journal
        if journal is None:
            return
        try:
            journal.open()
        except OSError as exc:
            journal.close()
            self._journal = None
            self._hold_for = 0.0
            log.warning("spool: cannot make the journal %s (%s); every burst is committed "
                        "to %s instead (more bytes written per reading)", self.journal_path,
                        exc, self.path)
            return
        if self._journal_found:
            self._fence()  # what the records held is in SQLite now

    def _journal_write(self, msgs: list[Message], acks: list[int], sync: bool = True) -> bool:
        """One record in the journal, synced by the syncer (`sync`: asked now); False if
        the burst is too large for it or the journal failed (then it is off). Raises
        SpoolWriteError if a block holds readings that could not be written to SQLite to
        make room."""
        journal = self._journal
        assert journal is not None
        try:
            journal.append(msgs, _runs(acks), self._release, self._oldest_held)
        except RecordTooLarge:
            return False
        except OSError as exc:
            self._journal_failed(str(exc))
            return False
        if sync and self._syncer is not None:
            self._syncer.ask()
        return True

    def _release(self, last_id: int) -> None:
        """A journal block is needed again: held rows up to `last_id` go to SQLite."""
        with self._held_lock:
            due = [m for m, _ in self._held.values() if m.id <= last_id]
            if due:
                self._flush_rows(due)

    def _check_journal(self) -> None:
        """The journal's path no longer names the open ring (deleted, replaced): a start
        after a crash would find nothing there. What is held goes to SQLite, then the
        ring is made again at its path (tried again at the next check if SQLite refuses)."""
        journal = self._journal
        what = journal.moved() if journal is not None else None
        if journal is None or what is None:
            return
        with self._held_lock:
            try:
                self._flush_held()
            except SpoolWriteError as exc:
                log.error("spool: the journal %s was %s, and what only it held cannot be "
                          "written to %s yet (%s): tried again", self.journal_path, what,
                          self.path, exc)
                return
            try:
                journal.start_anew(self._seqs)
            except OSError as exc:
                self._journal_failed(f"it was {what} and cannot be made again: {exc}")
                return
            self._fence()  # every device's seq, in the new ring at once
        if self._syncer is not None:
            self._syncer.reopen()
        log.warning("spool: the journal %s was %s while in use; made it again",
                    self.journal_path, what)

    def _fence(self) -> None:
        """Nothing is held: a record that says so, synced now (rare: at a start that
        found records, and when bursts go to SQLite instead), unless the last one did."""
        journal = self._journal
        if journal is None or journal.fenced or self._held:
            return
        if self._journal_write([], []) and self._journal is not None \
                and journal.fileno is not None:
            try:
                os.fdatasync(journal.fileno)
            except OSError as exc:
                self._journal_failed(str(exc))

    def _oldest_held(self) -> int | None:
        return next(iter(self._held), None)

    def _journal_failed(self, why: str) -> None:
        """Writing or syncing the journal failed: commit every burst to SQLite from now
        on, first what is held (its records may not be on disk)."""
        journal, self._journal = self._journal, None
        if journal is None:
            return
        journal.close()
        self._hold_for = self.write_delay
        self._inline_sync = self._inline_synced = True  # SQLite syncs in each COMMIT
        log.error("spool: the journal %s failed (%s); every burst is committed to %s from "
                  "now on", self.journal_path, why, self.path)
        try:
            self._flush_held()
        except SpoolWriteError as exc:
            log.error("spool: the readings held for the journal cannot be written to %s "
                      "yet (%s): they are tried again", self.path, exc)

    def release_memory(self) -> None:
        """After a backlog: both connections give back the cache memory they can (and
        `_known` the table a backlog grew, which a dict keeps once it has it)."""
        self._known = OrderedDict(self._known)
        for db in (self._db, self._reader_db):
            if db is None:
                continue
            try:
                with self._reader_lock if db is self._reader_db else self._held_lock:
                    db.execute("PRAGMA shrink_memory")
            except sqlite3.Error as exc:
                log.debug("spool shrink_memory: %s", exc)

    def next_due(self) -> float | None:
        """When the oldest held row is due on disk (monotonic); None if none is held."""
        with self._held_lock:
            for _, due in self._held.values():
                return due
        return None

    def flush_due(self, now: float | None = None) -> int:
        """Write the held rows that are due (all of them with now=inf) in one
        transaction; how many. Raises SpoolWriteError if the spool refuses them (they
        stay held, accepted, and are tried again)."""
        now = time.monotonic() if now is None else now
        with self._held_lock:
            due: list[Message] = []
            # Once the oldest is due, those due within half a delay go with it: while the
            # broker is away, one commit per half delay rather than one per group commit.
            horizon = now + self._hold_for / 2
            for m, when in self._held.values():
                if when > (horizon if due else now) or len(due) >= 5000:
                    break
                due.append(m)
            if not due:
                return 0
            self._flush_rows(due)
            return len(due)

    def _flush_held(self) -> None:
        """Every held row to SQLite, oldest first; raises SpoolWriteError (the rest stay
        held) if SQLite refuses them."""
        while self.flush_due(float("inf")):
            pass

    def _flush_rows(self, due: list[Message]) -> None:
        """Write held rows (the oldest, in id order) to SQLite and stop holding them."""
        with self._held_lock:
            self._transaction([NewRow(m.device, m.topic, m.seq, m.payload) for m in due], [],
                              ids=[m.id for m in due])
            for m in due:
                del self._held[m.id]
                self._held_bytes -= row_bytes(m)

    def _transaction(self, rows: list[NewRow], delete_ids: list[int],
                     ids: list[int] | None = None, staged: Staged | None = None) -> WriteResult:
        """One transaction. New rows get ids from the counter, or `ids` (held rows)."""
        result = WriteResult()
        if not rows and not delete_ids:
            return result
        db = self._db
        count, nbytes = self._count, self._bytes
        rows_of = dict(self._rows_of)
        latest_gone: set[str] = set()  # devices whose latest seq this transaction deletes
        gone: list[int] = []  # ids this transaction deletes (for `_known`)
        told: list[Message] = []  # handed to `staged` (they may be on the wire)
        try:
            if rows:
                # The lease first: no seq is committed (or sent) above what it covers.
                self.lease.extend(self.spool_id, {r.device: r.seq for r in rows})
                self._limit_growth()
                if staged is not None and ids is None and self._fits_whole(rows):
                    # No capacity policy can touch this transaction, so its rows get these
                    # ids whatever the deletes do: the publisher can start on them now.
                    told = self._hand_over(staged, [
                        Message(self._next_id + i, r.topic, r.payload, r.device, r.seq)
                        for i, r in enumerate(rows)])
            db.execute("BEGIN IMMEDIATE")
            if delete_ids:
                removed, removed_bytes = self._delete(delete_ids, rows_of, latest_gone, gone)
                result.deleted = removed
                count -= removed
                nbytes -= removed_bytes
            if rows and self.when_full == "reject_new" and ids is None:  # held: admitted
                keep = self.fits(rows, count, nbytes)
                result.rejected = len(rows) - keep
                rows = rows[:keep]
            if rows:
                new_bytes = sum(row_bytes(r) for r in rows)
                over = max(0, count + len(rows) - self.max_messages)
                if over or nbytes + new_bytes > self.max_bytes:
                    result.dropped, freed = self._drop_oldest(
                        over, nbytes + new_bytes, rows_of, latest_gone)
                    count -= result.dropped
                    nbytes -= freed
                row_ids = ids if ids is not None else range(
                    self._next_id, self._next_id + len(rows))
                cur = db.cursor()
                for start, size in _chunks(len(rows)):
                    cur.execute(_insert_sql(size), [
                        v for i, r in zip(row_ids[start:start + size], rows[start:start + size],
                                          strict=True)
                        for v in (i, r.device, r.topic, r.seq, r.payload)
                    ])
                for r in rows:
                    rows_of[r.device] = rows_of.get(r.device, 0) + 1
                # Handed over early: those are these rows, under these ids (_fits_whole).
                result.stored = told or [
                    Message(i, r.topic, r.payload, r.device, r.seq)
                    for i, r in zip(row_ids, rows, strict=True)
                ]
                count += len(rows)
                nbytes += new_bytes
            # A device whose latest seq goes with a deleted row, and that gets no newer row
            # here: its seq must outlive the row. Not only when its last row goes: acks out
            # of order can delete seq 3 and leave seq 2, and a start after a crash took
            # its seq from the rows then, giving 3 again (found by the spool's property test).
            inserted = {r.device for r in rows}
            _upsert_seqs(db, [(d, self._seqs[d]) for d in latest_gone
                              if d not in inserted and d in self._seqs])
            if staged is not None and ids is None and result.stored and not told:
                told = self._hand_over(staged, result.stored)
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if told:
                # They may be on the wire already, and a PUBACK for one of them may yet
                # come: an id that never names another reading keeps that ack harmless.
                self._next_id = told[-1].id + 1
            failed = self._failed(exc)
            if failed.state == "full" and getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" \
                    and (reason := self._growth_reason()) is not None:
                failed = SpoolWriteError("full", f"{reason} ({exc})")
            self._growth_seen = None  # the next commit looks at the disk in full
            raise failed from exc
        self._synced_commit()
        self._count, self._bytes = count, nbytes
        self._rows_of = {d: n for d, n in rows_of.items() if n}
        self._remember(result, gone)
        if ids is None:  # held rows: their ids and seqs were given when they were held
            self._next_id += len(result.stored)
            for m in result.stored:
                self._seqs[m.device] = m.seq
        return result

    def _remember(self, result: WriteResult, gone: list[int]) -> None:
        """After a COMMIT: `_known` loses the rows it deleted and gains those it stored."""
        known = self._known
        if result.dropped:
            known.clear()  # the capacity policy took the oldest rows: rare, start over
        for i in gone:
            known.pop(i, None)
        for m in result.stored:
            known[m.id] = (m.device, row_bytes(m), m.seq)
        while len(known) > _KNOWN_ROWS:
            known.popitem(last=False)

    def _hand_over(self, staged: Staged, msgs: list[Message]) -> list[Message]:
        """Hand rows to the publisher ahead of their COMMIT, once their seqs are noted
        where a restart after a crash finds them (gateway.outbox.handover); [] if they
        could not be noted (they then go once committed)."""
        seqs: dict[str, int] = {}
        for m in msgs:
            if m.seq > seqs.get(m.device, 0):
                seqs[m.device] = m.seq
        if not self.handover.note(self.spool_id, seqs):
            return []
        _tell_staged(staged, msgs)
        return msgs

    def _fits_whole(self, rows: list[NewRow]) -> bool:
        """`rows` fit beside every row already stored: no policy drops or refuses any."""
        return (self._count + len(rows) <= self.max_messages
                and self._bytes + sum(row_bytes(r) for r in rows) <= self.max_bytes)

    def _limit_growth(self) -> None:
        """Let the database grow only as far as the disk (and RLIMIT_FSIZE) can take.

        In WAL mode new pages reach the database file at the next checkpoint; if the
        disk is full by then, the checkpoint fails, the WAL can never start over, and
        not even a delete can commit again. So an insert that would grow the file past
        what is free (keeping margin_bytes() for the WAL) fails at once with
        SQLITE_FULL (`max_page_count`), rolled back, and the rows wait in memory.

        Every commit of new rows looks (something else may fill the disk at any time),
        so the look is kept to a PRAGMA, a statvfs and a getrlimit; the reason is put
        into words only when a commit fails (`_growth_reason`).
        """
        page = self.page_size
        margin = self._margin
        free = free_bytes(self._dir)
        limit = file_size_limit()
        seen = self._growth_seen
        if (seen is not None and free is not None and limit == seen[1]
                and free - margin >= _ROOM_QUICK and abs(free - seen[0]) < _FREE_SLACK):
            # Plenty of room, and the cap set at the last full look is off by less than
            # _FREE_SLACK: two statements fewer per commit (~20 µs of the spooler's CPU).
            return
        self._growth_seen = None if free is None else (free, limit)
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        cap = self._bytes_cap  # safety net; the capacity policy acts first
        why: tuple[str, int] = ("max_bytes", cap * page)
        if free is not None:
            disk_cap = pages + max(0, free - margin) // page
            if disk_cap < cap:
                cap = disk_cap
                why = ("disk", free)
        if limit is not None and limit // page - 1 < cap:
            cap = limit // page - 1
            why = ("fsize", limit)
        self._growth_limit = why
        if cap != self._page_cap:
            self._db.execute(f"PRAGMA max_page_count = {max(cap, 1)}")
            self._page_cap = cap

    def _growth_reason(self) -> str | None:
        """Why the file may not grow now, in words (see `_limit_growth`)."""
        if self._growth_limit is None:
            return None
        kind, value = self._growth_limit
        if kind == "disk":
            return (f"disk full: {value // 1024} KiB free on the file system of "
                    f"{self._dir}, {self._margin // 1024} KiB of it kept for the spool's WAL")
        if kind == "fsize":
            return (f"file size limit reached: RLIMIT_FSIZE (ulimit -f, LimitFSIZE=) is "
                    f"{value} bytes")
        return f"the spool reached buffer.max_bytes plus its margin ({value} bytes)"

    def _delete(self, ids: list[int], rows_of: dict[str, int],
                latest_gone: set[str], gone: list[int]) -> tuple[int, int]:
        # Counted first, then deleted: two statements per chunk, where RETURNING would
        # step (and hand the GIL to another thread) once per row.
        gone.extend(ids)
        runs = _runs(ids)
        removed = removed_bytes = 0
        if len(runs) <= _RANGE_RUNS:
            # The usual case: the acks of the last burst, consecutive ids. A range is a
            # rowid range scan, where the JSON list is parsed by json_each and joined
            # (measured ~30 µs less per commit of five).
            for first, last in runs:
                n, nbytes = self._uncount_known(first, last, rows_of, latest_gone)
                if n < 0:
                    n, nbytes = self._uncount(_UNCOUNT_RANGE_SQL, [first, last], rows_of,
                                              latest_gone)
                self._db.execute(_DELETE_RANGE_SQL, (first, last))
                removed += n
                removed_bytes += nbytes
            return removed, removed_bytes
        for start in range(0, len(ids), _DELETE_CHUNK):
            # The ids travel as one JSON array: one statement text whatever their number.
            # With `IN (?, ?, ...)` every batch size was a statement of its own, and the
            # connection's statement cache (128) filled with large ones, a backlog after
            # another: RSS grew with every broker outage (bench_outage_rss.py).
            chunk = [json.dumps(ids[start:start + _DELETE_CHUNK])]
            n, nbytes = self._uncount(_UNCOUNT_IDS_SQL, chunk, rows_of, latest_gone)
            self._db.execute(_DELETE_IDS_SQL, chunk)
            removed += n
            removed_bytes += nbytes
        return removed, removed_bytes

    def _uncount_known(self, first: int, last: int, rows_of: dict[str, int],
                       latest_gone: set[str]) -> tuple[int, int]:
        """`_uncount` for the ids first..last from memory, when every one of them is a row
        this spool committed and still knows (`_known`: then the range's delete removes
        exactly these rows); (-1, 0) if one is not, and the table must say."""
        known = self._known
        if not all(i in known for i in range(first, last + 1)):
            return -1, 0
        nbytes = 0
        for i in range(first, last + 1):
            device, size, seq = known[i]
            self._take_off(device, 1, seq, rows_of, latest_gone)
            nbytes += size
        return last - first + 1, nbytes

    def _uncount(self, sql: str, args: list[int] | list[str], rows_of: dict[str, int],
                 latest_gone: set[str]) -> tuple[int, int]:
        """Take the rows `sql` selects (grouped by device) off the per-device counts;
        note the devices whose latest seq is among them."""
        removed = removed_bytes = 0
        for device, n, nbytes, top in self._db.execute(sql, args):
            self._take_off(device, int(n), int(top), rows_of, latest_gone)
            removed += int(n)
            removed_bytes += int(nbytes)
        return removed, removed_bytes

    def _take_off(self, device: str, n: int, top_seq: int, rows_of: dict[str, int],
                  latest_gone: set[str]) -> None:
        """`n` rows of `device`, the highest with `top_seq`, are deleted: off its count,
        and its seq must outlive them if the latest is among them."""
        rows_of[device] = rows_of.get(device, 0) - n
        if top_seq >= self._seqs.get(device, 0):
            latest_gone.add(device)

    def _drop_oldest(self, over: int, total_bytes: int, rows_of: dict[str, int],
                     latest_gone: set[str]) -> tuple[int, int]:
        """Delete the oldest rows until `over` rows and enough bytes are freed."""
        need_bytes = total_bytes - self.max_bytes
        dropped = dropped_bytes = 0
        while over > 0 or need_bytes > 0:
            candidates = self._db.execute(
                f"SELECT id, {_ROW_SIZE} FROM messages"
                " ORDER BY id LIMIT ?",
                (max(over, 256 if need_bytes > 0 else 1),),
            ).fetchall()
            if not candidates:
                break
            cut = n = freed = 0
            for row_id, size in candidates:
                if over - n <= 0 and need_bytes - freed <= 0:
                    break
                cut, n, freed = row_id, n + 1, freed + size + ROW_OVERHEAD
            self._uncount(f"{_DEVICE_SIZE_SQL} WHERE id <= ? GROUP BY device", [cut],
                          rows_of, latest_gone)
            self._db.execute("DELETE FROM messages WHERE id <= ?", (cut,))
            dropped += n
            dropped_bytes += freed
            over -= n
            need_bytes -= freed
        return dropped, dropped_bytes

    def checkpoint(self, mode: Literal["PASSIVE", "RESTART", "TRUNCATE"] = "RESTART") -> None:
        """Copy the WAL into the database file so the next transactions reuse the WAL
        from its start (RESTART) or, with TRUNCATE, give its space back."""
        try:
            self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            log.debug("spool checkpoint (%s): %s", mode, exc)

    def fetch(self, after_id: int, limit: int) -> list[Message]:
        # Held rows (write_delay) are newer than every row on disk; the lock keeps a
        # flush from moving rows between the two reads.
        with self._held_lock:
            msgs = self._fetch_disk(after_id, limit)
            if len(msgs) < limit and self._held:
                for m, _ in self._held.values():
                    if m.id > after_id:
                        msgs.append(m)
                        if len(msgs) >= limit:
                            break
        return msgs

    def _fetch_disk(self, after_id: int, limit: int) -> list[Message]:
        # One result row for the whole batch: the sqlite3 module releases the GIL on
        # every row it steps to, and a publisher that is behind (a backlog) would queue
        # for the GIL behind the readers once per row. Payloads travel as hex (any bytes).
        with self._reader_lock:
            (packed,) = self._reader().execute(
                "SELECT json_group_array(json_array(id, topic, hex(payload), device, seq))"
                " FROM (SELECT * FROM messages WHERE id > ? ORDER BY id LIMIT ?)",
                (after_id, limit),
            ).fetchone()
            rows = json.loads(packed)
            if len(rows) < limit and self._reader_db is not None:
                # Caught up: from here the outbox hands new rows over itself, and the
                # spool is read again only after an outage or a reconnect. The
                # connection (its caches, ~50 KiB) is opened again then.
                self._reader_db.close()
                self._reader_db = None
        rows.sort(key=lambda r: r[0])  # already in order in practice; SQL does not promise it
        fromhex = bytes.fromhex
        return [Message(r[0], r[1], fromhex(r[2]), r[3], r[4]) for r in rows]

    def count(self) -> int:
        """Readings accepted and not acknowledged: on disk, and held (write_delay)."""
        return int(self._count) + len(self._held)

    def size_bytes(self) -> int:
        return int(self._bytes) + self._held_bytes

    def close(self) -> None:
        if self._held:
            try:
                self._flush_held()
            except SpoolWriteError as exc:
                log.error("spool %s: %s; the %d readings held in memory (buffer.write_delay) "
                          "are lost at exit", self.path, exc, len(self._held))
        # Everything is in SQLite or acknowledged: a record that says so, and the next
        # start takes nothing from the journal.
        self._fence()
        with self._reader_lock:
            if self._reader_db is not None:
                self._reader_db.close()
                self._reader_db = None
        if self.check_file() is not None:
            try:  # the open file is the only copy of what it holds: write it back first
                self.recreate()
            except (OSError, sqlite3.Error) as exc:
                log.error("spool %s was %s and cannot be written again (%s): the %d readings "
                          "in it are lost at exit", self.path, self.check_file(), exc,
                          self._count)
        if self.check_file() is None:
            self._write_down()
        self.checkpoint("TRUNCATE")  # syncs the WAL, then the database file
        self._db.close()
        self.handover.close()
        if self._syncer is not None:
            self._syncer.close()
        if self._journal is not None:
            self._journal.close()

    def _write_down(self) -> None:
        """At a clean close: every device's seq and the next id, so the file alone says
        where things stand (tools read `seqs`), and this run's marks go (the next start
        continues exactly). Without it (a crash) the next open works the seqs out from
        the rows, the handover note or the lease (`_note_last_run`)."""
        # Seqs handed over ahead of a COMMIT that then failed may be at the broker: the
        # next run continues above them too.
        seqs = dict(self._seqs)
        for device, seq in self.handover.seqs.items():
            seqs[device] = max(seq, seqs.get(device, 0))
        last = list(seqs.items())
        try:
            self._db.execute("BEGIN IMMEDIATE")
            _upsert_seqs(self._db, last)
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?)",
                             (str(self._next_id),))
            if not self._held:  # everything held is on disk: the seqs above are exact
                self._db.execute("DELETE FROM meta WHERE key IN ('delayed_open', 'open_boot')")
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            except sqlite3.Error as rb:
                log.debug("spool rollback at close: %s", rb)
            log.warning("spool %s: cannot record the seqs at close (%s); they are worked "
                        "out from the rows at the next start", self.path, exc)


class MemorySpool(_Capacity):
    """`buffer.durability: memory`: the same behaviour, no disk writes.

    Trade-off: readings not yet delivered, and `seq`, do not survive a restart.
    """

    def __init__(
        self,
        *,
        max_messages: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        when_full: WhenFull = "drop_oldest",
    ) -> None:
        super().__init__(max_messages, max_bytes, when_full)
        self._rows: OrderedDict[int, Message] = OrderedDict()
        self._seqs: dict[str, int] = {}
        self._next_id = 1
        self._bytes = 0
        self._lock = threading.Lock()
        self.moved_aside: Path | None = None

    def last_seqs(self) -> dict[str, int]:
        with self._lock:
            return dict(self._seqs)

    def write(self, rows: list[NewRow], delete_ids: list[int],
              staged: Staged | None = None) -> WriteResult:
        removed = self.delete(delete_ids)
        result = self.insert(rows)
        result.deleted = removed
        return result

    def delete(self, ids: list[int]) -> int:
        removed = 0
        with self._lock:
            for i in ids:
                m = self._rows.pop(i, None)
                if m is not None:
                    self._bytes -= row_bytes(m)
                    removed += 1
        return removed

    def check_file(self) -> str | None:
        return None

    def recreate(self) -> None:
        pass

    def next_due(self) -> float | None:
        return None

    def flush_due(self, now: float | None = None) -> int:
        return 0

    def release_memory(self) -> None:
        pass

    def insert(self, rows: list[NewRow], staged: Staged | None = None) -> WriteResult:
        # Nothing to wait for in memory: the caller hands on the rows once this returns.
        result = WriteResult()
        with self._lock:
            if rows and self.when_full == "reject_new":
                keep = self.fits(rows, len(self._rows), self._bytes)
                result.rejected = len(rows) - keep
                rows = rows[:keep]
            new_bytes = sum(row_bytes(r) for r in rows)
            while self._rows and (
                len(self._rows) + len(rows) > self.max_messages
                or self._bytes + new_bytes > self.max_bytes
            ):
                _, m = self._rows.popitem(last=False)
                self._bytes -= row_bytes(m)
                result.dropped += 1
            for r in rows:
                m = Message(self._next_id, r.topic, r.payload, r.device, r.seq)
                self._next_id += 1
                self._rows[m.id] = m
                self._seqs[r.device] = r.seq
                result.stored.append(m)
            self._bytes += new_bytes
        return result

    def fetch(self, after_id: int, limit: int) -> list[Message]:
        out: list[Message] = []
        with self._lock:
            for mid, m in self._rows.items():  # ids ascend; skip the delivered head
                if mid > after_id:
                    out.append(m)
                    if len(out) >= limit:
                        break
        return out

    def count(self) -> int:
        return len(self._rows)

    def size_bytes(self) -> int:
        return int(self._bytes)

    def watch_threads(self, on_error: Callable[[str], None]) -> None:
        """A memory spool runs no thread of its own."""

    def close(self) -> None:
        if self._rows:
            log.warning(
                "durability is 'memory': %d undelivered readings are discarded at exit",
                len(self._rows),
            )
