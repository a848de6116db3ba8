"""Rows go to the publisher while their commit reaches the disk, not after it.

The spooler hands a transaction's new rows over between their INSERT and the COMMIT
(`Spool.write(..., staged=)`), so a reading travels to the broker while the fsync runs
(benchmarks/bench_latency.py). What must hold:
- the rows are handed over before another connection can see them, and are on disk
  once `write` returns;
- a COMMIT that fails after the hand-over (here a real file size limit on the WAL,
  in a child process) leaves nothing in the spool, and its ids are never given to
  another row: a late PUBACK for a copy already sent then deletes nothing;
- the outbox takes those readings again from the spool once it is writable: the same
  seq, a new id (a duplicate by seq, as after a reconnect, never a loss).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.outbox import Outbox
from gateway.outbox.spool import Message, NewRow, SqliteSpool
from gateway.reading import Reading
from tests.support import REPO, wait_until


def rows(device: str, seqs: range) -> list[NewRow]:
    return [NewRow(device, f"p/{device}", s, f'{{"seq":{s}}}'.encode()) for s in seqs]


def visible(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    finally:
        con.close()


def test_rows_are_handed_over_before_the_commit_and_stored_after(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    spool = SqliteSpool(db, sync="full")
    seen: list[tuple[list[int], int]] = []

    def staged(msgs: list[Message]) -> None:
        seen.append(([m.seq for m in msgs], visible(db)))

    try:
        result = spool.write(rows("a", range(1, 4)), [], staged)
        assert seen == [([1, 2, 3], 0)]  # handed over while no one else could read them
        assert [m.seq for m in result.stored] == [1, 2, 3]
        assert visible(db) == 3
        # Deletes alone hand nothing over.
        spool.write([], [m.id for m in result.stored], staged)
        assert len(seen) == 1 and visible(db) == 0
    finally:
        spool.close()


def test_when_the_capacity_policy_acts_only_the_stored_rows_are_handed_over(
    tmp_path: Path,
) -> None:
    """Rows are handed over before the transaction when nothing can be dropped or
    refused; when the spool is at its limit, after the policy chose: only what it kept."""
    spool = SqliteSpool(tmp_path / "s.db", max_messages=3, when_full="reject_new")
    seen: list[list[int]] = []
    try:
        spool.write(rows("a", range(1, 3)), [], lambda m: seen.append([x.seq for x in m]))
        result = spool.write(rows("a", range(3, 6)), [],
                             lambda m: seen.append([x.seq for x in m]))
        assert result.rejected == 2
        assert seen == [[1, 2], [3]]
        assert [m.seq for m in spool.fetch(0, 10)] == [1, 2, 3]
    finally:
        spool.close()


def test_held_rows_are_not_handed_over_early(tmp_path: Path) -> None:
    """buffer.write_delay: rows wait in memory, no disk is waited for; the outbox
    hands them on after `write` returns, as before."""
    spool = SqliteSpool(tmp_path / "s.db", write_delay=60.0)
    seen: list[list[Message]] = []
    try:
        result = spool.write(rows("a", range(1, 3)), [], seen.append)
        assert seen == [] and len(result.stored) == 2
    finally:
        spool.close()


CHILD = r"""
import json, os, resource, signal, sys, threading, time
from pathlib import Path
from gateway.outbox import Outbox
from gateway.outbox.spool import SqliteSpool
from gateway.reading import Reading

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as a daemon would: a write fails, EFBIG
db = Path(sys.argv[1])
spool = SqliteSpool(db, sync="full")
box = Outbox(spool, "gw")
taken, limited = [], []
unlimited = resource.getrlimit(resource.RLIMIT_FSIZE)
wal = Path(f"{db}-wal")

def ready() -> None:
    # Called at the hand-over (before the COMMIT) or after a commit: take as the
    # publisher would. The first hand-over caps the WAL where it ends: the COMMIT fails.
    taken.extend((m.id, m.device, m.seq) for m in box.take(100))
    if not limited:
        size = wal.stat().st_size if wal.exists() else 0
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, unlimited[1]))
        limited.append(size)

box.on_ready(ready)
box.start()
box.put(Reading("a", {"v": 1}))
deadline = time.monotonic() + 30
while box.spool_state == "ok" and time.monotonic() < deadline:
    time.sleep(0.01)
failed_state = box.spool_state
first = list(taken)
resource.setrlimit(resource.RLIMIT_FSIZE, unlimited)
while time.monotonic() < deadline and (box.spool_state != "ok" or len(taken) < 2):
    time.sleep(0.01)
stored = [(m.id, m.device, m.seq) for m in spool.fetch(0, 100)]
box.stop()
print(json.dumps({"failed_state": failed_state, "first": first, "taken": taken,
                  "stored": stored, "errors": box.stats.spool_errors}))
"""


def test_a_commit_that_fails_after_the_hand_over_loses_nothing_and_reuses_no_id(
    tmp_path: Path,
) -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "s.db")], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["failed_state"] in ("full", "io_error"), got
    assert got["errors"] >= 1
    # The reading was handed over (and could have been sent) before its commit failed...
    assert [(d, s) for _, d, s in got["first"]] == [("a", 1)]
    first_id = got["first"][0][0]
    # ...then stored once the limit was lifted: the same seq under a new, higher id.
    assert [(d, s) for _, d, s in got["stored"]] == [("a", 1)]
    new_id = got["stored"][0][0]
    assert new_id > first_id
    # The outbox handed it over again (the publisher sends it again: a duplicate by seq).
    assert [tuple(t) for t in got["taken"]] == [(first_id, "a", 1), (new_id, "a", 1)]


def test_a_rewind_during_the_commit_does_not_strand_the_handed_over_rows(
    tmp_path: Path,
) -> None:
    """The publisher reconnects (rewind) between the hand-over and the COMMIT: its read
    of the spool cannot see the rows yet, so the outbox hands them over again after
    the commit instead of leaving them for the next reconnect."""
    spool = SqliteSpool(tmp_path / "s.db")
    box = Outbox(spool, "gw")
    after_rewind: list[list[int]] = []
    calls = 0

    def ready() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # at the hand-over: a reconnect, and a read that finds nothing
            box.rewind()
            after_rewind.append([m.seq for m in box.take(100)])

    box.on_ready(ready)
    box.start()
    try:
        assert box.put(Reading("a", {"v": 1}))
        assert wait_until(lambda: calls >= 2, 10)
        assert after_rewind == [[]]
        assert [m.seq for m in box.take(100)] == [1]
    finally:
        box.stop()
