"""The burst journal (buffer.journal, gateway.outbox.journal): one 4 KiB block per burst,
readings in SQLite only when not acknowledged in time, and nothing accepted lost by a
crash, a torn record, a full ring, or a journal that cannot be written."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.outbox import journal as journal_mod
from gateway.outbox.faults import SpoolWriteError
from gateway.outbox.journal import BLOCK, BurstJournal, Row, decode, encode
from gateway.outbox.spool import Message, NewRow, SqliteSpool
from tests.support import seqs_on_disk as on_disk
from tests.support import spool_rows as rows
from tests.support import wait_until


def _open(path: Path, blocks: int = 8) -> SqliteSpool:
    return SqliteSpool(path, sync="full", journal=True, journal_blocks=blocks)


def _crash(spool: SqliteSpool) -> None:
    """The process dies: its connections and files close, close() never runs (the page
    cache keeps every write, as it does through a SIGKILL)."""
    if spool._reader_db is not None:
        spool._reader_db.close()
    spool._db.close()
    if spool._syncer is not None:
        spool._syncer.close()
    if spool._journal is not None:
        spool._journal.close()


def _ids(msgs: list[Message]) -> list[int]:
    return [m.id for m in msgs]


# -- the record format ----------------------------------------------------------------

ROWS = st.lists(st.builds(
    Row, id=st.integers(0, 2**63), seq=st.integers(0, 2**63),
    device=st.text(max_size=40), topic=st.text(max_size=80), payload=st.binary(max_size=300),
), max_size=20)


@given(rows_=ROWS, acks=st.lists(st.tuples(st.integers(0, 2**63), st.integers(0, 2**63)),
                                 max_size=5),
       carry=st.dictionaries(st.text(max_size=20), st.integers(0, 2**63), max_size=5))
@settings(max_examples=200, deadline=None)
def test_a_record_body_reads_back_as_written(rows_: list[Row], acks: list[tuple[int, int]],
                                             carry: dict[str, int]) -> None:
    assert decode(encode(rows_, acks, carry)) == (rows_, acks, carry)


@given(junk=st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_a_body_that_is_not_one_fails_with_the_errors_recover_expects(junk: bytes) -> None:
    try:
        decode(junk)
    except (ValueError, struct.error):  # UnicodeDecodeError is a ValueError
        pass


@given(cut=st.integers(1, 400), flip=st.integers(0, 10_000))
@settings(max_examples=100, deadline=None)
def test_a_torn_or_flipped_record_is_ignored_and_the_ones_before_it_count(
        tmp_path_factory: pytest.TempPathFactory, cut: int, flip: int) -> None:
    """A crash inside the write of the newest record (its tail never reached the disk)
    or a flipped bit: the CRC rejects that record; the records before it still say what
    they held."""
    path = tmp_path_factory.mktemp("j") / "s.db.journal"
    j = BurstJournal(path, "ab" * 16, blocks=8)
    j.recover()
    j.open()
    first = [Row(1, 1, "a", "p/a", b"one"), Row(2, 2, "a", "p/a", b"two")]
    last = [Row(3, 3, "a", "p/a", b"three")]
    oldest = iter([None, 1])  # when the second record is written, id 1 is held
    j.append(first, [], lambda _: None, lambda: next(oldest))
    j.append(last, [(2, 2)], lambda _: None, lambda: next(oldest))
    j.close()
    data = bytearray(path.read_bytes())
    covered = journal_mod._HEAD.size + journal_mod._HEAD.unpack_from(data, BLOCK)[-1]
    if flip % 2:  # a bit of the header after its crc, or of the body
        data[BLOCK + 8 + flip % (covered - 8)] ^= 1 << (flip % 8)
    else:  # the record's tail never written
        data[BLOCK + cut % covered:2 * BLOCK] = bytes(BLOCK - cut % covered)
    path.write_bytes(bytes(data))
    found = BurstJournal(path, "ab" * 16, blocks=8).recover()
    assert [r.id for r in found.rows] == [1, 2]  # the ack of 2 went with the torn record
    assert found.seqs == {"a": 2}


# -- the spool with the journal ---------------------------------------------------------


def test_acknowledged_bursts_never_reach_sqlite_and_a_burst_is_one_block(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = _open(path)
    wal = Path(f"{path}-wal")
    size = wal.stat().st_size
    try:
        acks: list[int] = []
        for burst in range(20):
            stored = spool.write(rows("a", range(burst * 10 + 1, burst * 10 + 11)), acks).stored
            acks = _ids(stored)
        assert spool._journal is not None and spool._journal.records_written == 20
        # Twenty bursts of ten readings: twenty blocks (the ring has 8: it went round).
        assert spool._journal._pos == 20 % 8
        assert spool.count() == 10
        assert on_disk(path) == [] and wal.stat().st_size == size
        assert spool.wait_synced(10)
    finally:
        spool.close()
    assert on_disk(path) == [("a", s) for s in range(191, 201)]  # a stop writes what is held
    again = _open(path)
    try:
        assert again.last_seqs() == {"a": 200}
        assert _ids(again.fetch(0, 100)) == acks
    finally:
        again.close()


def test_a_crash_loses_nothing_accepted_and_gives_back_nothing_acknowledged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.db"
    spool = _open(path)
    a = spool.write(rows("a", range(1, 6)), []).stored
    b = spool.write(rows("b", range(1, 4)), _ids(a[:2])).stored
    spool.write([], [b[0].id])  # an ack alone: a record of its own
    _crash(spool)
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        again = _open(path)
    try:
        assert [(m.device, m.seq) for m in again.fetch(0, 100)] == [
            ("a", 3), ("a", 4), ("a", 5), ("b", 2), ("b", 3)]
        assert again.last_seqs() == {"a": 5, "b": 3}  # no gap: the process died, not the Pi
        assert "5 readings the broker had not acknowledged were taken from the journal" \
            in caplog.text
        new = again.write(rows("a", [6]), []).stored
        assert new[0].id > b[-1].id  # no id given twice
    finally:
        again.close()


def test_a_clean_stop_leaves_nothing_to_take_from_the_journal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.db"
    spool = _open(path)
    spool.write(rows("a", range(1, 4)), [])
    spool.close()
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        again = _open(path)
    try:
        assert "taken from the journal" not in caplog.text
        assert [m.seq for m in again.fetch(0, 10)] == [1, 2, 3]
    finally:
        again.close()


def test_a_block_still_holding_readings_is_overwritten_only_after_they_are_in_sqlite(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = _open(path, blocks=4)
    try:
        old = spool.write(rows("a", range(1, 4)), []).stored  # never acknowledged
        acks: list[int] = []
        for s in range(1, 4):  # three more records: the ring is full
            acks = _ids(spool.write(rows("b", [s]), acks).stored)
        assert on_disk(path) == []
        spool.write(rows("b", [4]), acks)  # lands on the block of `old`
        assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3)]
        assert _ids(spool.fetch(0, 100))[:3] == _ids(old)
    finally:
        _crash(spool)
    again = _open(path, blocks=4)
    try:
        assert [(m.device, m.seq) for m in again.fetch(0, 100)] == [
            ("a", 1), ("a", 2), ("a", 3), ("b", 4)]
    finally:
        again.close()


def test_a_device_whose_latest_row_left_the_ring_keeps_its_seq_across_a_crash(
        tmp_path: Path) -> None:
    """`a` reports once and is acknowledged; `b` then fills the ring, so no record holds
    a's row any more, and SQLite never had it. The records carry a's seq."""
    path = tmp_path / "s.db"
    spool = _open(path, blocks=4)
    a = spool.write(rows("a", [41]), []).stored
    acks = _ids(a)
    for s in range(1, 10):
        acks = _ids(spool.write(rows("b", [s]), acks).stored)
    _crash(spool)
    again = _open(path, blocks=4)
    try:
        assert again.last_seqs() == {"a": 41, "b": 9}
    finally:
        again.close()


def test_a_burst_too_large_for_a_record_goes_to_sqlite_after_what_is_held(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = _open(path, blocks=16)  # records of at most 2 blocks
    try:
        held = spool.write(rows("a", range(1, 4)), []).stored
        big = spool.write([NewRow("b", "p/b", s, b"x" * 300) for s in range(1, 40)], []).stored
        assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3)] + [("b", s) for s in range(1, 40)]
        assert _ids(spool.fetch(0, 100)) == _ids(held) + _ids(big)
        assert spool._journal is not None  # still in use for bursts that fit
    finally:
        spool.close()


def test_a_journal_that_cannot_be_made_leaves_every_burst_to_sqlite(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.db"
    Path(f"{path}.journal").mkdir()  # not a file: open() fails with EISDIR
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        spool = _open(path)
    try:
        assert "cannot read the journal" in caplog.text and "Is a directory" in caplog.text
        spool.write(rows("a", [1, 2]), [])
        assert on_disk(path) == [("a", 1), ("a", 2)]
    finally:
        spool.close()


def test_a_journal_write_that_fails_sends_what_is_held_and_every_later_burst_to_sqlite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    spool = _open(path)
    try:
        held = spool.write(rows("a", [1, 2]), []).stored

        def eio(fd: int, data: bytes, offset: int) -> int:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "pwrite", eio)  # the journal writes with os.pwrite
        with caplog.at_level(logging.ERROR, logger="gateway.spool"):
            later = spool.write(rows("a", [3]), []).stored
        assert "the journal" in caplog.text and "Input/output error" in caplog.text
        assert spool._journal is None
        assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3)]
        assert _ids(spool.fetch(0, 10)) == _ids(held) + _ids(later)
        spool.write(rows("a", [4]), [])
        assert on_disk(path)[-1] == ("a", 4)
    finally:
        spool.close()


def test_an_fdatasync_of_the_journal_that_fails_sends_every_burst_to_sqlite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.db"
    spool = _open(path)
    real = os.fdatasync
    journal_ino = None

    def failing(fd: int) -> None:
        if os.fstat(fd).st_ino == journal_ino:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    try:
        journal_ino = os.stat(spool.journal_path).st_ino
        monkeypatch.setattr(os, "fdatasync", failing)
        spool.write(rows("a", [1, 2]), [])
        assert spool._syncer is not None
        wait_until(lambda: spool._syncer is not None and spool._syncer.errors == 1, timeout=10)
        spool.write(rows("a", [3]), [])
        assert spool._journal is None
        assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3)]
    finally:
        monkeypatch.setattr(os, "fdatasync", real)
        spool.close()


def test_room_in_the_ring_that_sqlite_cannot_give_refuses_the_burst_and_loses_nothing(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = _open(path, blocks=2)
    try:
        spool.write(rows("a", [1]), [])
        spool.write(rows("a", [2]), [])
        spool._db.execute("CREATE TEMP TRIGGER refuse BEFORE INSERT ON messages "
                          "BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END")
        with pytest.raises(SpoolWriteError):
            spool.write(rows("a", [3]), [])  # needs the block of seq 1, which cannot go
        assert spool.count() == 2 and spool.last_seqs() == {"a": 2}
        spool._db.execute("DROP TRIGGER refuse")
        spool.write(rows("a", [3]), [])
        assert [m.seq for m in spool.fetch(0, 10)] == [1, 2, 3]
    finally:
        _crash(spool)
    again = _open(path, blocks=2)
    try:
        assert [m.seq for m in again.fetch(0, 10)] == [1, 2, 3]
    finally:
        again.close()


_CHILD = """
import sys
from gateway.outbox.spool import SqliteSpool, NewRow
spool = SqliteSpool(sys.argv[1], sync="full", journal=True, journal_blocks=16)
due = {}  # step -> [(id, seq)] acknowledged then
for s in range(1, 1_000_000):
    acks = due.pop(s, [])
    stored = spool.write([NewRow("a", "p/a", s, b'{"seq":%d}' % s)], [i for i, _ in acks])
    # Most are acknowledged with the next burst; every 50th 20 bursts later, after its
    # block came round again: it goes to SQLite, and bursts go there too until it is acked.
    due.setdefault(s + (20 if s % 50 == 0 else 1), []).append((stored.stored[0].id, s))
    # accepted s; how many are held (journal) now; acknowledged these
    print(s, len(spool._held), *[q for _, q in acks], flush=True)
"""


def test_sigkill_at_any_moment_keeps_every_accepted_reading(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real process killed while it writes bursts and acknowledges them, so the spool
    goes from the journal to SQLite and back: every reading it reported accepted and not
    acknowledged is in the spool afterwards, once, in order; none it acknowledged is."""
    path = tmp_path / "s.db"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parent.parent)
    assert child.stdout is not None
    accepted: list[int] = []
    acked: set[int] = set()
    went_to_sqlite = False
    for line in child.stdout:
        s, held, *done = map(int, line.split())
        accepted.append(s)
        acked.update(done)
        went_to_sqlite |= held == 0
        if went_to_sqlite and held > 1 and s > 120:  # been to SQLite and back, a 50th held
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    for line in child.stdout:
        if not line.endswith("\n"):
            break  # killed inside the print: that write's outcome is unknown, as the next
        s, _, *done = map(int, line.split())
        accepted.append(s)
        acked.update(done)
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        spool = _open(path, blocks=16)
    try:
        seqs = [m.seq for m in spool.fetch(0, 1_000_000)]
        waiting = [s for s in accepted if s not in acked]
        # The write the kill interrupted (not reported) may have stored its reading and
        # taken its acks, or not.
        busy = accepted[-1] + 1
        maybe_acked = {r for r in accepted if r + (20 if r % 50 == 0 else 1) == busy}
        assert set(waiting) - maybe_acked <= set(seqs)
        assert not set(seqs) & acked
        assert set(seqs) - set(waiting) <= {busy}
        assert seqs == sorted(seqs)
        assert "taken from the journal" in caplog.text
        assert spool.last_seqs()["a"] >= accepted[-1]
    finally:
        spool.close()


def test_the_sqlite_file_is_not_needed_to_find_the_journal_of_another_spool(
        tmp_path: Path) -> None:
    """A spool file that was unreadable is moved aside and started anew (a new spool id):
    what only the journal held still goes into the new file."""
    path = tmp_path / "s.db"
    spool = _open(path)
    spool.write(rows("a", [1, 2]), [])
    _crash(spool)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"not a database" * 100)
    again = _open(path)
    try:
        assert again.moved_aside is not None
        assert [m.seq for m in again.fetch(0, 10)] == [1, 2]
    finally:
        again.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


_SMALL_FSIZE_CHILD = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))  # Python ignores SIGXFSZ
from gateway.outbox.spool import SqliteSpool, NewRow
spool = SqliteSpool(sys.argv[1], sync="full", journal=True)
spool.write([NewRow("a", "p/a", 1, b"one")], [])
print("journal" if spool._journal is not None else "sqlite", flush=True)
spool.close()
"""


def test_a_journal_that_cannot_be_made_full_size_leaves_every_burst_to_sqlite(
        tmp_path: Path) -> None:
    """RLIMIT_FSIZE below the ring's 1 MiB (a real EFBIG from the kernel, in a child):
    the spool says so and commits every burst to SQLite."""
    path = tmp_path / "s.db"
    out = subprocess.run([sys.executable, "-c", _SMALL_FSIZE_CHILD, str(path)],
                         capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sqlite"
    assert "cannot make the journal" in out.stderr and "File too large" in out.stderr
    assert on_disk(path) == [("a", 1)]


@pytest.mark.parametrize("what", ["deleted", "replaced"])
def test_a_journal_deleted_or_replaced_while_in_use_is_made_again(
        tmp_path: Path, what: str, caplog: pytest.LogCaptureFixture) -> None:
    """Writes to an unlinked ring would be lost to the start after a crash: what is held
    goes to SQLite and the ring is made again at its path (a stranger's file moved aside)."""
    path = tmp_path / "s.db"
    spool = _open(path)
    spool.write(rows("a", [1, 2]), [])
    journal = Path(f"{path}.journal")
    journal.unlink()
    if what == "replaced":
        journal.write_bytes(b"someone else's")
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        assert spool.check_file() is None  # the spool file itself is fine
    assert f"was {what}" in caplog.text and "made it again" in caplog.text
    assert on_disk(path) == [("a", 1), ("a", 2)]
    assert journal.stat().st_size == 8 * BLOCK
    if what == "replaced":
        assert [p.read_bytes() for p in tmp_path.glob("s.db.journal.replaced-*")] == [
            b"someone else's"]
    _crash(spool)  # the new ring alone says where seq stands: a's rows are in SQLite...
    again = _open(path)
    try:
        assert again.last_seqs() == {"a": 2}
        b7 = again.write(rows("b", [7]), _ids(again.fetch(0, 10))).stored
        again.write([], _ids(b7))  # acknowledged: in no table, only in the ring
        journal.unlink()
        assert again.check_file() is None
    finally:
        _crash(again)
    third = _open(path)  # ...b's only there: its row was acknowledged before a new ring
    try:
        assert third.last_seqs() == {"a": 2, "b": 7}
        third.write(rows("c", [1]), [])
    finally:
        _crash(third)
    fourth = _open(path)
    try:
        assert [(m.device, m.seq) for m in fourth.fetch(0, 10)] == [("c", 1)]
        assert fourth.last_seqs() == {"a": 2, "b": 7, "c": 1}
    finally:
        fourth.close()


def test_with_a_backlog_on_disk_bursts_go_to_sqlite_until_it_is_acknowledged(
        tmp_path: Path) -> None:
    """The broker is away: once held readings went to SQLite, later bursts are sent
    after them anyway, so they are committed there at once (no journal block, no hold);
    the write whose acks take the last of them off the disk is held again."""
    path = tmp_path / "s.db"
    spool = _open(path)
    try:
        old = spool.write(rows("a", [1, 2]), []).stored
        assert spool.flush_due(float("inf")) == 2  # not acknowledged in time
        journal = spool._journal
        assert journal is not None
        records = journal.records_written
        later = spool.write(rows("a", [3]), _ids(old[:1])).stored
        assert on_disk(path) == [("a", 2), ("a", 3)]
        assert not spool._held
        assert journal.records_written == records + 1 and journal.fenced  # the fence only
        spool.write(rows("a", [4]), [])
        assert on_disk(path)[-1] == ("a", 4) and journal.records_written == records + 1
        spool.write(rows("a", [5]), [old[1].id, later[0].id, later[0].id + 1])
        assert on_disk(path) == []
        assert [m.seq for m, _ in spool._held.values()] == [5]
        assert journal.records_written == records + 2
    finally:
        _crash(spool)
    again = _open(path)
    try:
        assert [m.seq for m in again.fetch(0, 10)] == [5]
    finally:
        again.close()


@pytest.mark.parametrize("now", [{"journal": False}, {"sync": "normal"}, {"write_delay": 5.0}])
def test_a_start_without_the_journal_still_takes_what_the_last_run_left_in_it(
        tmp_path: Path, now: dict[str, object]) -> None:
    """The last run had the journal and died; this one has it off (the config changed):
    the readings only the journal held are not lost, and the journal goes."""
    path = tmp_path / "s.db"
    spool = _open(path)
    spool.write(rows("a", [1, 2]), [])
    _crash(spool)
    kwargs: dict[str, object] = {"sync": "full", "journal": True, **now}
    again = SqliteSpool(path, **kwargs)  # type: ignore[arg-type]
    try:
        assert [m.seq for m in again.fetch(0, 10)] == [1, 2]
        assert again.last_seqs() == {"a": 2}
        assert not Path(f"{path}.journal").exists()
    finally:
        again.close()


def test_a_journal_that_fails_while_sqlite_refuses_too_keeps_the_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal fails while SQLite refuses writes (a full disk): what was held stays
    held, nothing new is accepted, and once SQLite takes writes again the held readings
    go first, so the readings keep their order."""
    path = tmp_path / "s.db"
    spool = _open(path)
    try:
        held = spool.write(rows("a", [1, 2]), []).stored
        spool._db.execute("CREATE TEMP TRIGGER refuse BEFORE INSERT ON messages "
                          "BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END")

        def eio(fd: int, data: bytes, offset: int) -> int:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "pwrite", eio)
        with pytest.raises(SpoolWriteError):
            spool.write(rows("a", [3]), [])
        with pytest.raises(SpoolWriteError):
            spool.write(rows("a", [3]), [])  # still held; still refused
        assert spool._journal is None and spool.count() == 2
        spool._db.execute("DROP TRIGGER refuse")
        later = spool.write(rows("a", [3]), []).stored
        assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3)]
        assert _ids(spool.fetch(0, 10)) == _ids(held) + _ids(later)
    finally:
        monkeypatch.undo()
        spool.close()


def test_a_record_of_several_blocks_is_read_back_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = _open(path, blocks=16)  # records of up to two blocks
    burst = [NewRow("a", "p/a", s, bytes([s]) * 200) for s in range(1, 26)]  # ~5.5 KiB
    stored = spool.write(burst, []).stored
    assert spool._journal is not None and spool._journal._ring[-1].blocks == 2
    assert on_disk(path) == []
    _crash(spool)
    again = _open(path, blocks=16)
    try:
        assert [(m.id, m.seq, m.payload) for m in again.fetch(0, 100)] == [
            (m.id, m.seq, m.payload) for m in stored]
    finally:
        again.close()
