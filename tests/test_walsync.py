"""`buffer.sync: full` fsyncs the WAL in a thread of its own (gateway.outbox.walsync).

The fdatasync below is the real system call, wrapped only to see it happen, to hold
it (a slow SD card) or to make it fail (a dying one).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.outbox.spool import NewRow, SqliteSpool
from gateway.outbox.walsync import WalSyncer

FULL, NORMAL = 2, 1  # PRAGMA synchronous values


def rows(device: str, seqs: range | list[int]) -> list[NewRow]:
    return [NewRow(device, f"p/{device}", s, b'{"v":1}') for s in seqs]


def syncer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "spool-syncer"]


class Fdatasync:
    """os.fdatasync as the syncer calls it: recorded, and held or failed on demand."""

    def __init__(self) -> None:
        self.real: Callable[[int], None] = os.fdatasync
        self.paths: list[str] = []
        self.inodes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        self.inodes.append(os.fstat(fd).st_ino)
        self.entered.set()
        assert self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        self.real(fd)


@pytest.fixture
def fdatasync(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fdatasync]:
    fake = Fdatasync()
    monkeypatch.setattr("gateway.outbox.walsync.os.fdatasync", fake)
    try:
        yield fake
    finally:
        fake.gate.set()


def test_commits_leave_the_fsync_to_the_syncer(tmp_path: Path, fdatasync: Fdatasync) -> None:
    spool = SqliteSpool(tmp_path / "s.db", sync="full")
    try:
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == NORMAL
        syncer = spool._syncer
        assert syncer is not None and syncer.alive()
        assert syncer._thread in syncer_threads()  # named, like every thread
        spool.insert(rows("a", range(1, 4)))
        assert spool.wait_synced(30)
        assert fdatasync.paths and set(fdatasync.paths) == {str(tmp_path / "s.db-wal")}
    finally:
        spool.close()
    assert not syncer.alive()  # close() stops it


def test_a_slow_disk_does_not_hold_the_commits_back(tmp_path: Path,
                                                    fdatasync: Fdatasync) -> None:
    """While an fdatasync hangs (a slow SD card), the spooler goes on committing and
    handing rows over; the next sync covers every commit made meanwhile."""
    spool = SqliteSpool(tmp_path / "s.db", sync="full")
    try:
        assert spool.wait_synced(30)
        fdatasync.gate.clear()
        fdatasync.entered.clear()
        before = len(fdatasync.paths)
        spool.insert(rows("a", [1]))
        assert fdatasync.entered.wait(30)  # the syncer is inside the held fdatasync
        handed: list[int] = []
        for seq in range(2, 7):  # five more commits while it is held
            spool.insert(rows("a", [seq]), lambda stored: handed.extend(m.seq for m in stored))
        assert handed == [2, 3, 4, 5, 6]
        assert [m.seq for m in spool.fetch(0, 10)] == [1, 2, 3, 4, 5, 6]
        assert not spool.wait_synced(0.05)  # not on disk yet: the sync is still held
        fdatasync.gate.set()
        assert spool.wait_synced(30)
        # The held sync and at most one more for the five commits made meanwhile.
        assert len(fdatasync.paths) - before <= 2, fdatasync.paths[before:]
    finally:
        spool.close()


def test_a_failed_fdatasync_turns_the_sync_back_into_the_commit(
        tmp_path: Path, fdatasync: Fdatasync, caplog: pytest.LogCaptureFixture) -> None:
    """EIO from fdatasync: logged, and from then on every COMMIT syncs inside its
    transaction (synchronous=FULL), where a disk that fails makes the commit fail."""
    spool = SqliteSpool(tmp_path / "s.db", sync="full")
    try:
        fdatasync.fail = OSError(errno.EIO, "Input/output error")
        spool.insert(rows("a", [1]))
        assert spool.wait_synced(30)
        assert "fdatasync of" in caplog.text and "Input/output error" in caplog.text
        spool.insert(rows("a", [2]))  # the first commit after the failure switches
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == FULL
        spool.insert(rows("a", [3]))
        assert [m.seq for m in spool.fetch(0, 10)] == [1, 2, 3]
    finally:
        spool.close()


def test_sync_normal_has_no_syncer(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path / "s.db", sync="normal")
    try:
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == NORMAL
        assert spool._syncer is None
        assert spool.wait_synced(0)
    finally:
        spool.close()


def test_a_syncer_whose_spool_is_gone_ends(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A spool dropped without close() (the tests' simulated crash) is not kept alive by
    its syncer, and the syncer ends at its next idle check."""
    import gc
    import weakref

    from gateway.outbox import walsync

    monkeypatch.setattr(walsync, "IDLE_CHECK", 0.05)
    spool = SqliteSpool(tmp_path / "s.db", sync="full")
    syncer = spool._syncer
    assert isinstance(syncer, WalSyncer)
    gone = weakref.ref(spool)
    spool._db.close()
    del spool
    gc.collect()
    assert gone() is None
    syncer._thread.join(30)
    assert not syncer.alive()


def test_a_spool_written_anew_is_synced_in_its_new_file(tmp_path: Path,
                                                        fdatasync: Fdatasync) -> None:
    """The syncer keeps the WAL open between syncs; when the spool file is deleted and
    written anew, the next sync is of the new WAL, not of the deleted one."""
    spool = SqliteSpool(tmp_path / "s.db", sync="full")
    try:
        spool.insert(rows("a", [1]))
        assert spool.wait_synced(30)
        old = fdatasync.inodes[-1]
        for name in ("s.db", "s.db-wal"):
            (tmp_path / name).unlink()
        spool.recreate()
        spool.insert(rows("a", [2]))
        assert spool.wait_synced(30)
        assert fdatasync.inodes[-1] != old
        assert fdatasync.inodes[-1] == (tmp_path / "s.db-wal").stat().st_ino
        assert [m.seq for m in spool.fetch(0, 10)] == [1, 2]
    finally:
        spool.close()
