"""buffer.write_delay (the SD-card mode): readings acknowledged in time never reach
the disk; the others are spooled once due; a stop writes everything; a crash costs
only the unacknowledged readings of the last window and never a seq given twice."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.outbox import Outbox
from gateway.outbox.spool import SqliteSpool
from gateway.reading import Reading
from tests.support import seqs_on_disk as on_disk
from tests.support import spool_rows as rows
from tests.support import wait_until


def test_acknowledged_in_time_never_written(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path, write_delay=60.0)
    wal = path.with_name("s.db-wal")
    size = wal.stat().st_size
    try:
        stored = spool.insert(rows("a", range(1, 11))).stored
        assert [m.seq for m in stored] == list(range(1, 11))
        assert spool.count() == 10
        assert [m.seq for m in spool.fetch(0, 100)] == list(range(1, 11))
        assert spool.write([], [m.id for m in stored]).deleted == 10
        assert spool.count() == 0 and spool.size_bytes() == 0
        assert on_disk(path) == []
        assert wal.stat().st_size == size  # not one frame for ten readings
        assert spool.flush_due(float("inf")) == 0
    finally:
        spool.close()


def test_not_acknowledged_in_time_goes_to_disk_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path, write_delay=0.2)
    try:
        first = spool.insert(rows("a", range(1, 4))).stored
        due = spool.next_due()
        assert due is not None
        time.sleep(0.15)  # the next batch is due at least 0.35 s after the first
        later = spool.insert(rows("a", range(4, 6))).stored
        assert spool.flush_due(due - 0.001) == 0  # not due yet
        # The first batch, and what is due within half a delay after it: not the second.
        assert spool.flush_due(due) == 3
        assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3)]
        # Disk rows and held rows read back as one sequence, in id order.
        assert [m.id for m in spool.fetch(0, 10)] == [m.id for m in first + later]
        assert [m.seq for m in spool.fetch(first[1].id, 2)] == [3, 4]
        # An ack for a spooled row deletes it on disk; one for a held row only forgets it.
        assert spool.write([], [first[0].id, later[0].id]).deleted == 2
        assert on_disk(path) == [("a", 2), ("a", 3)]
        assert spool.count() == 3
    finally:
        spool.close()
    assert on_disk(path) == [("a", 2), ("a", 3), ("a", 5)]  # a stop writes what is held
    again = SqliteSpool(path, write_delay=60.0)
    try:
        assert again.last_seqs() == {"a": 5}  # a clean stop: exact, no gap
        assert again.insert(rows("a", [6])).stored[0].id > later[-1].id
    finally:
        again.close()


def test_a_crash_loses_only_what_was_held_and_seq_never_repeats(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path, write_delay=60.0, lease_block=100)
    spool.insert(rows("a", range(1, 4)))
    spool.flush_due(float("inf"))
    spool.insert(rows("a", range(4, 8)))  # held, then the power goes
    del spool  # no close
    again = SqliteSpool(path, write_delay=60.0, lease_block=100)
    try:
        assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3)]
        # Seqs 4..7 may have been published: continue above the lease, never at 4.
        assert again.last_seqs()["a"] >= 7 + 1
        assert again.last_seqs()["a"] <= 7 + 100
    finally:
        again.close()
    # That close was clean: the next start continues exactly where it stopped.
    third = SqliteSpool(path, write_delay=60.0, lease_block=100)
    try:
        assert third.last_seqs() == again.last_seqs()
    finally:
        third.close()
    # Without write_delay every seq is committed first: a crash needs no jump.
    plain = SqliteSpool(path, lease_block=100)
    plain.insert(rows("a", [plain.last_seqs()["a"] + 1]))
    last = plain.last_seqs()["a"]
    del plain
    after = SqliteSpool(path, lease_block=100)
    try:
        assert after.last_seqs()["a"] == last
    finally:
        after.close()


def test_outbox_spools_what_the_broker_did_not_acknowledge(tmp_path: Path) -> None:
    """Through the outbox: acked readings never reach the file, unacked ones do once
    the delay has passed (the spooler wakes for them by itself)."""
    path = tmp_path / "s.db"
    box = Outbox(SqliteSpool(path, write_delay=0.3), "p", ack_delay=0.1)
    box.start()
    try:
        for v in range(5):
            assert box.put(Reading("a", {"v": v}))
        assert box.flush()
        taken = box.take(100)
        assert [m.seq for m in taken] == [1, 2, 3, 4, 5]
        box.ack([m.id for m in taken[:3]])  # the broker acknowledged three in time
        assert wait_until(lambda: on_disk(path) == [("a", 4), ("a", 5)], 10), on_disk(path)
        box.ack([m.id for m in taken[3:]])
        assert wait_until(lambda: on_disk(path) == [], 10)
    finally:
        box.stop()
    assert box.stats.accepted == 5 and box.stats.delivered == 5
