"""The spool and outbox on a real SQLite file (WAL): acceptance, seq, capacity, corruption."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.outbox import Outbox
from gateway.outbox.spool import (
    PAGE_SIZE,
    ROW_OVERHEAD,
    MemorySpool,
    NewRow,
    SpoolWriteError,
    SqliteSpool,
    row_bytes,
)
from gateway.reading import Reading


def rows(device: str, seqs: range | list[int]) -> list[NewRow]:
    return [NewRow(device, f"p/{device}", s, f'{{"seq":{s}}}'.encode()) for s in seqs]


def test_wal_mode_and_synchronous(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path / "s.db", sync="full")
    try:
        db = sqlite3.connect(tmp_path / "s.db")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
    finally:
        spool.close()


def test_new_spool_has_small_pages_existing_one_keeps_its_own(tmp_path: Path) -> None:
    """Small pages for a new file (small WAL frames: fewer bytes per commit on an SD
    card); a spool made with 4 KiB pages by an earlier version opens as it is."""
    SqliteSpool(tmp_path / "new.db").close()
    old = sqlite3.connect(tmp_path / "old.db")
    old.execute("PRAGMA page_size=4096")
    old.execute("CREATE TABLE x (y)")
    old.close()
    spool = SqliteSpool(tmp_path / "old.db")
    try:
        spool.insert(rows("a", range(1, 4)))
    finally:
        spool.close()
    for name, size in (("new.db", PAGE_SIZE), ("old.db", 4096)):
        db = sqlite3.connect(tmp_path / name)
        assert db.execute("PRAGMA page_size").fetchone()[0] == size
        db.close()
    assert PAGE_SIZE == 2048


def test_a_spool_of_the_earlier_schema_keeps_its_ids_and_seqs(tmp_path: Path) -> None:
    """Files made with AUTOINCREMENT (and a seqs row per insert) by an earlier version:
    new ids go above sqlite_sequence even when the table is empty, seqs continue."""
    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL,"
        " topic TEXT NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL);"
        "CREATE TABLE seqs (device TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO messages (device, topic, seq, payload) VALUES ('a', 't', 7, x'00');"
        "DELETE FROM messages; INSERT INTO seqs VALUES ('a', 7);")
    old.commit()
    old.close()
    spool = SqliteSpool(tmp_path / "old.db")
    try:
        assert spool.last_seqs() == {"a": 7}
        assert spool.insert(rows("a", [8])).stored[0].id == 2  # sqlite_sequence said 1
    finally:
        spool.close()


def test_seqs_are_kept_by_the_rows_then_by_the_table_when_a_device_drains(
        tmp_path: Path) -> None:
    """A commit writes a device's seq to `seqs` only when its last row is deleted; while
    rows are there, the newest says it. Both survive a crash (no close)."""
    spool = SqliteSpool(tmp_path / "s.db")
    a = spool.write(rows("a", range(1, 4)) + rows("b", range(1, 3)), []).stored
    table = sqlite3.connect(tmp_path / "s.db")
    assert table.execute("SELECT COUNT(*) FROM seqs").fetchone()[0] == 0
    # b's rows all acknowledged (in the transaction of a's next reading): b drains.
    spool.write(rows("a", [4]), [m.id for m in a if m.device == "b"] + [a[0].id])
    assert dict(table.execute("SELECT device, seq FROM seqs").fetchall()) == {"b": 2}
    table.close()
    del spool  # a crash: no close, no seqs written down
    again = SqliteSpool(tmp_path / "s.db")
    try:
        assert again.last_seqs() == {"a": 4, "b": 2}
        assert [m.seq for m in again.fetch(0, 10)] == [2, 3, 4]
        assert again.count() == 3
    finally:
        again.close()


def test_a_commit_that_drains_a_device_writes_its_seq_in_one_more_page(tmp_path: Path) -> None:
    """A burst split in two (a straggler) makes the first commit delete a device's last
    row: its seq goes to `seqs`. That table is WITHOUT ROWID, so the commit writes the
    messages page and ONE seqs page; a rowid table keyed by text would add its key
    index's page (3 WAL frames, not 2)."""
    spool = SqliteSpool(tmp_path / "s.db")
    try:
        first = spool.write(rows("a", [1]) + rows("b", [1]), []).stored
        wal = tmp_path / "s.db-wal"
        before = wal.stat().st_size
        spool.write(rows("a", [2]), [m.id for m in first])  # b's last row goes, b's doesn't come
        frames = (wal.stat().st_size - before) // (PAGE_SIZE + 24)
        assert frames == 2, frames
        table = sqlite3.connect(tmp_path / "s.db")
        try:
            assert dict(table.execute("SELECT device, seq FROM seqs").fetchall()) == {"b": 1}
        finally:
            table.close()
    finally:
        spool.close()


def test_acks_and_inserts_commit_together_or_not_at_all(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path / "s.db")
    first = spool.insert(rows("a", range(1, 4))).stored
    frames = (tmp_path / "s.db-wal").stat().st_size
    result = spool.write(rows("a", range(4, 6)), [first[0].id])
    # One commit: its frames follow the last ones, and nothing else was written.
    assert result.deleted == 1 and [m.seq for m in result.stored] == [4, 5]
    grown = (tmp_path / "s.db-wal").stat().st_size - frames
    assert 0 < grown <= 2 * (PAGE_SIZE + 24), grown
    # A transaction that fails (here: an insert SQLite refuses) leaves the ack undone too.
    other = sqlite3.connect(tmp_path / "s.db")
    other.execute("CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.seq = 6 "
                  "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    other.commit()
    other.close()
    with pytest.raises(SpoolWriteError):
        spool.write(rows("a", [6]), [first[1].id])
    assert [m.seq for m in spool.fetch(0, 10)] == [2, 3, 4, 5]
    assert spool.count() == 4 and spool.last_seqs() == {"a": 5}
    spool.close()


def test_acks_come_off_the_counts_from_the_rows_known_or_by_the_table_alike(
        tmp_path: Path) -> None:
    """The acks of recent rows are taken off the counts without a query (`_known`: the
    newest rows committed, bounded); older rows, ids already gone and a failed commit go
    by the table. Either way the counts are the table's."""
    path = tmp_path / "s.db"
    spool = SqliteSpool(path)
    stored = []
    for start in range(1, 400, 10):
        stored += spool.insert(rows("a", range(start, start + 10))
                               + rows("bb", range(start, start + 5))).stored
    assert len(stored) == 600 and len(spool._known) == 512  # the newest only

    def agree() -> None:
        db = sqlite3.connect(path)
        try:
            per = {d: (n, size) for d, n, size in db.execute(
                "SELECT device, COUNT(*), SUM(LENGTH(payload) + LENGTH(topic) + LENGTH(device)"
                f" + {ROW_OVERHEAD}) FROM messages GROUP BY device")}
        finally:
            db.close()
        assert spool._rows_of == {d: n for d, (n, _) in per.items()}
        assert spool.count() == sum(n for n, _ in per.values())
        assert spool.size_bytes() == sum(size for _, size in per.values())

    assert spool.write([], [m.id for m in stored[:50]]).deleted == 50  # not known: the table
    agree()
    recent = [m.id for m in stored[-50:]]
    assert all(i in spool._known for i in recent)
    assert spool.write([], recent).deleted == 50  # known: counted from memory
    assert not any(i in spool._known for i in recent)
    agree()
    assert spool.write([], recent).deleted == 0  # gone already: nothing is counted twice
    assert spool.write([], [stored[-1].id + 1000]).deleted == 0  # never there
    agree()
    # A commit that fails: the counts are read again from the table, and what was known
    # is forgotten with them (a row it named may not be what the table holds now).
    other = sqlite3.connect(path)
    other.execute("CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.seq = 9999 "
                  "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    other.commit()
    other.close()
    with pytest.raises(SpoolWriteError):
        spool.write(rows("a", [9999]), [stored[-60].id])
    assert not spool._known
    agree()
    assert spool.write([], [stored[-60].id]).deleted == 1
    agree()
    spool.close()


def test_rows_survive_reopen_in_order_with_seqs(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path / "s.db")
    stored = spool.write(rows("a", range(1, 6)) + rows("b", range(1, 3)), []).stored
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5, 1, 2]
    spool.write([], [stored[0].id, stored[1].id])
    del spool  # no close: like a crash, the connection is just gone
    again = SqliteSpool(tmp_path / "s.db")
    try:
        left = again.fetch(0, 100)
        assert [(m.device, m.seq) for m in left] == [("a", 3), ("a", 4), ("a", 5), ("b", 1), ("b", 2)]
        assert again.last_seqs() == {"a": 5, "b": 2}
        assert again.count() == 5
        # ids keep increasing after reopen (AUTOINCREMENT), even if the table empties.
        again.write([], [m.id for m in left])
        nxt = again.write(rows("a", range(6, 7)), []).stored[0]
        assert nxt.id > left[-1].id
    finally:
        again.close()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_drop_oldest_keeps_newest_and_counts(tmp_path: Path, kind: str) -> None:
    spool = (SqliteSpool(tmp_path / "s.db", max_messages=10, when_full="drop_oldest")
             if kind == "sqlite" else MemorySpool(max_messages=10, when_full="drop_oldest"))
    r1 = spool.write(rows("a", range(1, 9)), [])
    r2 = spool.write(rows("a", range(9, 15)), [])
    assert r1.dropped == 0 and r2.dropped == 4
    assert [m.seq for m in spool.fetch(0, 100)] == list(range(5, 15))
    assert spool.count() == 10
    spool.close()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_reject_new_admits_only_what_fits(tmp_path: Path, kind: str) -> None:
    spool = (SqliteSpool(tmp_path / "s.db", max_messages=10, when_full="reject_new")
             if kind == "sqlite" else MemorySpool(max_messages=10, when_full="reject_new"))
    spool.write(rows("a", range(1, 9)), [])
    result = spool.write(rows("a", range(9, 14)), [])
    assert (len(result.stored), result.rejected, result.dropped) == (2, 3, 0)
    assert [m.seq for m in spool.fetch(0, 100)] == list(range(1, 11))
    assert spool.last_seqs() == {"a": 10}
    # Deletes in the same transaction make room first.
    first = spool.fetch(0, 3)
    result = spool.write(rows("a", range(11, 14)), [m.id for m in first])
    assert (len(result.stored), result.rejected) == (3, 0)
    spool.close()


def test_byte_cap_drops_oldest(tmp_path: Path) -> None:
    payload = b"x" * 30
    size = row_bytes(NewRow("a", "p/a", 1, payload))  # payload, topic, device, SQLite's share
    assert size == 30 + 3 + 1 + ROW_OVERHEAD
    spool = SqliteSpool(tmp_path / "s.db", max_bytes=3 * size + 10, when_full="drop_oldest")
    for i in range(1, 6):
        spool.write([NewRow("a", "p/a", i, payload)], [])
    assert spool.size_bytes() == 3 * size
    assert [m.seq for m in spool.fetch(0, 10)] == [3, 4, 5]
    spool.close()


def test_corrupt_spool_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR, logger="gateway.spool"):
        spool = SqliteSpool(path)
    try:
        assert spool.moved_aside is not None and spool.moved_aside.exists()
        assert spool.moved_aside.read_bytes().startswith(b"this is not a database")
        assert "moved it aside" in caplog.text
        assert spool.write(rows("a", range(1, 2)), []).stored[0].seq == 1
    finally:
        spool.close()


def test_outbox_accepts_assigns_seq_and_acks(tmp_path: Path) -> None:
    ready = threading.Event()
    box = Outbox(SqliteSpool(tmp_path / "s.db"), "gw/x", commit_interval=0.005)
    box.on_ready(ready.set)
    box.start()
    try:
        for i in range(20):
            assert box.put(Reading("t", {"temperature_c": float(i)}, 1_700_000_000.0 + i))
        assert box.flush(10)
        assert ready.is_set()
        taken = box.take(100)
        assert [m.seq for m in taken] == list(range(1, 21))
        assert taken[0].topic == "gw/x/t"
        assert taken[0].payload.startswith(b'{"seq":1,"ts":"2023-11-14T22:13:20.000Z","temperature_c":0.0')
        assert box.take(100) == []  # the cursor moved on
        box.ack(m.id for m in taken[:15])
        assert box.flush(10)
        assert box.spool.count() == 5
        assert box.stats.accepted == 20 and box.stats.delivered == 15
        assert box.stats.commits <= 20  # batched, not one commit per reading
        box.rewind()
        assert [m.seq for m in box.take(100)] == list(range(16, 21))
    finally:
        box.stop()


def test_outbox_reject_new_leaves_no_seq_gap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = SqliteSpool(tmp_path / "s.db", max_messages=5, when_full="reject_new")
    box = Outbox(spool, "gw", commit_interval=0.005)
    box.start()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.outbox"):
            for i in range(8):
                box.put(Reading("d", {"v": i}))
            assert box.flush(10)
        assert box.stats.rejected == 3 and box.stats.accepted == 5
        assert [m.seq for m in box.take(10)] == [1, 2, 3, 4, 5]
        assert caplog.text.count("spool full") == 1  # once per burst, not per reading
        box.ack([m.id for m in box.spool.fetch(0, 10)])
        box.put(Reading("d", {"v": 99}))
        assert box.flush(10)
        assert [m.seq for m in box.take(10)] == [6]  # the refused ones used no seq
    finally:
        box.stop()


def test_outbox_drop_oldest_counts_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(SqliteSpool(tmp_path / "s.db", max_messages=10), "gw", commit_interval=0.001)
    box.start()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.outbox"):
            for i in range(50):
                box.put(Reading("d", {"v": i}))
                if i % 5 == 4:
                    assert box.flush(10)
        assert box.stats.dropped_oldest == 40
        assert [m.seq for m in box.take(100)] == list(range(41, 51))
        assert caplog.text.count("spool full") == 1
    finally:
        box.stop()


def test_payload_contract_and_non_numbers(tmp_path: Path) -> None:
    import json

    from gateway.reading import encode_payload

    out = json.loads(encode_payload(17, 1764064800.123, {"temperature_c": 21.4, "n": 3}))
    assert out == {"seq": 17, "ts": "2025-11-25T10:00:00.123Z", "temperature_c": 21.4, "n": 3}
    assert list(out) == ["seq", "ts", "temperature_c", "n"]
    # NaN from a sensor is not valid JSON: it goes out as null, never crashes the spooler.
    assert json.loads(encode_payload(1, 0.0, {"t": float("nan")}))["t"] is None
    box = Outbox(SqliteSpool(tmp_path / "s.db"), "gw", commit_interval=0.001)
    box.start()
    try:
        box.put(Reading("d", {"bad": object()}))
        box.put(Reading("d", {"v": 1.0}))
        assert box.flush(10)
        assert box.stats.unencodable == 1
        assert [m.seq for m in box.take(10)] == [1]  # the refused reading used no seq
        assert box.alive
    finally:
        box.stop()


def test_deletes_of_any_size_are_one_statement_text(tmp_path: Path) -> None:
    """Acks come in batches of every size. With `IN (?, ?, ...)` each size was a
    statement of its own: the connection's statement cache (128) filled with large
    prepared statements, one backlog after another, and RSS grew with every broker
    outage (benchmarks/bench_outage_rss.py). The ids now travel as one JSON array, or,
    when they are a few runs of consecutive ids (the usual acks), as ranges."""
    import re

    spool = SqliteSpool(tmp_path / "s.db", sync="normal")
    texts: set[str] = set()

    def shape(sql: str) -> None:
        if "messages" in sql and (" IN " in sql.upper() or " BETWEEN " in sql.upper()):
            texts.add(re.sub(r"'[^']*'", "?", re.sub(r"\b\d+\b", "N", sql)))

    try:
        stored = spool.insert(rows("a", range(1, 1641))).stored
        spool._db.set_trace_callback(shape)
        ids = [m.id for m in stored]
        # Every other id first, in batches of 1, 2, ..., 40 (runs of one id each), then
        # the rest in consecutive batches of the same sizes.
        for half in (ids[::2], ids[1::2]):
            start = 0
            for size in range(1, 41):
                spool.delete(half[start:start + size])
                start += size
        assert spool.count() == 0
        # The count by device and the DELETE, each by JSON list and by range.
        assert len([t for t in texts if " IN " in t]) == 2, sorted(texts)
        assert len([t for t in texts if " BETWEEN " in t]) == 2, sorted(texts)
        assert len(texts) == 4, sorted(texts)
    finally:
        spool._db.set_trace_callback(None)
        spool.close()
