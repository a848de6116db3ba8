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
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

log = logging.getLogger("gateway.spool")

WhenFull = Literal["drop_oldest", "reject_new"]


@dataclass(slots=True)
class Message:
    """A spooled reading, ready to publish."""

    id: int
    topic: str
    payload: bytes
    device: str = ""
    seq: int = 0


@dataclass(slots=True)
class NewRow:
    device: str
    topic: str
    seq: int
    payload: bytes


@dataclass
class WriteResult:
    stored: list[Message] = field(default_factory=list)
    dropped: int = 0  # oldest rows removed to make room
    rejected: int = 0  # new rows refused (reject_new)


class Spool(Protocol):
    def last_seqs(self) -> dict[str, int]: ...
    def write(self, rows: list[NewRow], delete_ids: list[int]) -> WriteResult: ...
    def fetch(self, after_id: int, limit: int) -> list[Message]: ...
    def count(self) -> int: ...
    def size_bytes(self) -> int: ...
    def close(self) -> None: ...


class SpoolError(Exception):
    """The spool file cannot be opened (a directory missing, no permission, ...)."""


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
            if count + kept + 1 > self.max_messages or nbytes + len(r.payload) > self.max_bytes:
                break
            kept += 1
            nbytes += len(r.payload)
        return kept


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS seqs (device TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# Rows go in as multi-row INSERTs: the sqlite3 module releases the GIL for every
# statement step, so one step per row lets every other thread cut in per row. Batches
# are cut into a few fixed sizes so each statement text is prepared once and cached.
_CHUNK_SIZES = (256, 64, 16, 4, 1)
_DELETE_CHUNK = 500


def _chunks(n: int) -> list[tuple[int, int]]:
    """(start, size) pieces of n rows, sizes from _CHUNK_SIZES, largest first."""
    out: list[tuple[int, int]] = []
    start = 0
    for size in _CHUNK_SIZES:
        while n - start >= size:
            out.append((start, size))
            start += size
    return out


_INSERT_SQL: dict[int, str] = {}
_UPSERT_SQL: dict[int, str] = {}


def _insert_sql(n: int) -> str:
    sql = _INSERT_SQL.get(n)
    if sql is None:
        sql = _INSERT_SQL[n] = (
            "INSERT INTO messages (device, topic, seq, payload) VALUES "
            + ",".join(["(?, ?, ?, ?)"] * n)
        )
    return sql


def _upsert_seq_sql(n: int) -> str:
    sql = _UPSERT_SQL.get(n)
    if sql is None:
        sql = _UPSERT_SQL[n] = (
            "INSERT INTO seqs (device, seq) VALUES " + ",".join(["(?, ?)"] * n)
            + " ON CONFLICT(device) DO UPDATE SET seq = excluded.seq"
        )
    return sql


class SqliteSpool(_Capacity):
    """The durable spool: a SQLite database in WAL mode."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_messages: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        when_full: WhenFull = "drop_oldest",
        sync: Literal["full", "normal"] = "full",
    ) -> None:
        super().__init__(max_messages, max_bytes, when_full)
        self.path = Path(path)
        self.sync = sync
        self._local = threading.local()
        self.moved_aside: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open_writer()
            except sqlite3.OperationalError:
                raise  # cannot open or lock (permissions, read-only fs): not corruption
            except sqlite3.DatabaseError as exc:
                self.moved_aside = self._move_aside(exc)
                self._db = self._open_writer()
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SpoolError(f"cannot open the spool {self.path}: {reason}") from exc
        count, nbytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
        ).fetchone()
        self._count: int = int(count)
        self._bytes: int = int(nbytes)

    # -- opening ---------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.sync.upper()}")
        return db

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

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
        return db

    # -- the Spool protocol ----------------------------------------------------------
    def last_seqs(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT device, seq FROM seqs").fetchall())

    def write(self, rows: list[NewRow], delete_ids: list[int]) -> WriteResult:
        """One transaction: delete acknowledged rows, make room, insert new rows."""
        result = WriteResult()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if delete_ids:
                removed, removed_bytes = self._delete(delete_ids)
                self._count -= removed
                self._bytes -= removed_bytes
            if rows and self.when_full == "reject_new":
                keep = self.fits(rows, self._count, self._bytes)
                result.rejected = len(rows) - keep
                rows = rows[:keep]
            if rows:
                new_bytes = sum(len(r.payload) for r in rows)
                over = max(0, self._count + len(rows) - self.max_messages)
                if over or self._bytes + new_bytes > self.max_bytes:
                    result.dropped = self._drop_oldest(over, new_bytes)
                # One writer and AUTOINCREMENT: the new ids are consecutive.
                cur = db.cursor()
                for start, size in _chunks(len(rows)):
                    cur.execute(_insert_sql(size), [
                        v for r in rows[start:start + size]
                        for v in (r.device, r.topic, r.seq, r.payload)
                    ])
                last = list({r.device: r.seq for r in rows}.items())  # each device's newest
                for start, size in _chunks(len(last)):
                    cur.execute(_upsert_seq_sql(size),
                                [v for item in last[start:start + size] for v in item])
                top = db.execute("SELECT MAX(id) FROM messages").fetchone()[0]
                first = top - len(rows) + 1
                result.stored = [
                    Message(first + i, r.topic, r.payload, r.device, r.seq)
                    for i, r in enumerate(rows)
                ]
                self._count += len(rows)
                self._bytes += new_bytes
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result

    def _delete(self, ids: list[int]) -> tuple[int, int]:
        # Counted first, then deleted: two statements per chunk, where RETURNING would
        # step (and hand the GIL to another thread) once per row.
        removed = removed_bytes = 0
        for start in range(0, len(ids), _DELETE_CHUNK):
            chunk = ids[start:start + _DELETE_CHUNK]
            marks = ",".join("?" * len(chunk))
            n, nbytes = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
                f" WHERE id IN ({marks})", chunk,
            ).fetchone()
            self._db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
            removed += int(n)
            removed_bytes += int(nbytes)
        return removed, removed_bytes

    def _drop_oldest(self, over: int, new_bytes: int) -> int:
        """Delete the oldest rows until `over` rows and enough bytes are freed."""
        need_bytes = self._bytes + new_bytes - self.max_bytes
        dropped = 0
        while over > 0 or need_bytes > 0:
            candidates = self._db.execute(
                "SELECT id, LENGTH(payload) FROM messages ORDER BY id LIMIT ?",
                (max(over, 256 if need_bytes > 0 else 1),),
            ).fetchall()
            if not candidates:
                break
            cut = n = freed = 0
            for row_id, size in candidates:
                if over - n <= 0 and need_bytes - freed <= 0:
                    break
                cut, n, freed = row_id, n + 1, freed + size
            self._db.execute("DELETE FROM messages WHERE id <= ?", (cut,))
            dropped += n
            over -= n
            need_bytes -= freed
            self._count -= n
            self._bytes -= freed
        return dropped

    def fetch(self, after_id: int, limit: int) -> list[Message]:
        # One result row for the whole batch: the sqlite3 module releases the GIL on
        # every row it steps to, and a publisher that is behind (a backlog) would queue
        # for the GIL behind the readers once per row. Payloads travel as hex (any bytes).
        (packed,) = self._reader().execute(
            "SELECT json_group_array(json_array(id, topic, hex(payload), device, seq))"
            " FROM (SELECT * FROM messages WHERE id > ? ORDER BY id LIMIT ?)",
            (after_id, limit),
        ).fetchone()
        rows = json.loads(packed)
        rows.sort(key=lambda r: r[0])  # already in order in practice; SQL does not promise it
        fromhex = bytes.fromhex
        return [Message(r[0], r[1], fromhex(r[2]), r[3], r[4]) for r in rows]

    def count(self) -> int:
        return int(self._count)

    def size_bytes(self) -> int:
        return int(self._bytes)

    def close(self) -> None:
        reader: sqlite3.Connection | None = getattr(self._local, "db", None)
        if reader is not None:
            reader.close()
            self._local.db = None
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("spool checkpoint on close failed: %s", exc)
        self._db.close()


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

    def write(self, rows: list[NewRow], delete_ids: list[int]) -> WriteResult:
        result = WriteResult()
        with self._lock:
            for i in delete_ids:
                m = self._rows.pop(i, None)
                if m is not None:
                    self._bytes -= len(m.payload)
            if rows and self.when_full == "reject_new":
                keep = self.fits(rows, len(self._rows), self._bytes)
                result.rejected = len(rows) - keep
                rows = rows[:keep]
            new_bytes = sum(len(r.payload) for r in rows)
            while self._rows and (
                len(self._rows) + len(rows) > self.max_messages
                or self._bytes + new_bytes > self.max_bytes
            ):
                _, m = self._rows.popitem(last=False)
                self._bytes -= len(m.payload)
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

    def close(self) -> None:
        if self._rows:
            log.warning(
                "durability is 'memory': %d undelivered readings are discarded at exit",
                len(self._rows),
            )
