"""Property-based: any interleaving of put / take / ack / crash-and-reopen loses nothing
accepted and never hands out a row that was not accepted."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.outbox.spool import ROW_OVERHEAD, Message, NewRow, SqliteSpool

DEVICES = st.sampled_from(["a", "b", "c"])


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-prop-"))
        self.spool = SqliteSpool(self.dir / "s.db", sync="normal")
        self.model: dict[int, tuple[str, int, bytes]] = {}  # accepted, not acked: id -> row
        self.seqs: dict[str, int] = {}
        self.taken: list[Message] = []
        self.cursor = 0
        self.acked: list[int] = []  # ids no longer in the spool

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(device=DEVICES, n=st.integers(1, 20), acks=st.booleans())
    def put(self, device: str, n: int, acks: bool) -> None:
        start = self.seqs.get(device, 0)
        new = [NewRow(device, f"p/{device}", start + i + 1, f"{device}{start + i + 1}".encode())
               for i in range(n)]
        # Sometimes acks ride in the same transaction, as the outbox does.
        ack_ids = [m.id for m in self.taken[:3]] if acks else []
        result = self.spool.write(new, ack_ids)
        for i in ack_ids:
            self.model.pop(i, None)
        self.acked.extend(ack_ids)
        self.taken = self.taken[len(ack_ids):]
        assert [m.seq for m in result.stored] == [r.seq for r in new]
        for m in result.stored:
            assert m.id not in self.model
            self.model[m.id] = (m.device, m.seq, m.payload)
        self.seqs[device] = start + n

    @rule(limit=st.integers(1, 50))
    def take(self, limit: int) -> None:
        got = self.spool.fetch(self.cursor, limit)
        ids = [m.id for m in got]
        assert ids == sorted(ids) and all(i > self.cursor for i in ids)
        for m in got:
            assert m.id in self.model, "handed out a row that was never accepted (or was acked)"
            assert (m.device, m.seq, m.payload) == self.model[m.id]
        expected = sorted(i for i in self.model if i > self.cursor)[:limit]
        assert ids == expected
        if got:
            self.cursor = got[-1].id
        self.taken.extend(got)

    @precondition(lambda self: bool(self.taken))
    @rule(k=st.integers(1, 30))
    def ack(self, k: int) -> None:
        batch, self.taken = self.taken[:k], self.taken[k:]
        self.spool.write([], [m.id for m in batch])
        for m in batch:
            del self.model[m.id]
        self.acked.extend(m.id for m in batch)

    @precondition(lambda self: bool(self.taken))
    @rule(picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=40))
    def ack_scattered(self, picks: list[int]) -> None:
        """PUBACKs out of order, with gaps and repeats: a few runs of consecutive ids are
        deleted by range, many by a JSON list; both leave exactly the rows not acked."""
        ids = [self.taken[p % len(self.taken)].id for p in picks]
        self.spool.write([], ids)
        gone = set(ids)
        self.taken = [m for m in self.taken if m.id not in gone]
        for i in gone:
            del self.model[i]
        self.acked.extend(gone)

    @precondition(lambda self: bool(self.acked) or bool(self.model))
    @rule(picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=10),
          beyond=st.integers(0, 3))
    def ack_again(self, picks: list[int], beyond: int) -> None:
        """A PUBACK for a row already deleted, or for an id never committed (a commit
        that failed after its rows were handed over): nothing changes, and the counts
        stay those of the table (`_known` must not count rows that are not there)."""
        pool = self.acked or [max(self.model) + 1]
        ids = [pool[p % len(pool)] for p in picks]
        top = max([*self.model, *self.acked, 0])
        ids += [top + 1 + k for k in range(beyond)]
        self.spool.write([], ids)

    @rule()
    def rewind(self) -> None:
        self.cursor = 0
        self.taken = []

    @rule(device=DEVICES, n=st.integers(1, 5))
    def crash_mid_write(self, device: str, n: int) -> None:
        """A transaction that never commits: its rows must never be seen."""
        db = self.spool._db
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO messages (device, topic, seq, payload) VALUES (?, ?, ?, ?)",
            [(device, "p", 10_000 + i, b"uncommitted") for i in range(n)],
        )
        self._crash()

    @rule()
    def crash_and_reopen(self) -> None:
        self._crash()

    def _crash(self) -> None:
        # The process is gone: its connections die with it (an open transaction is rolled
        # back, its locks released), and spool.close() with its checkpoint never runs.
        reader = self.spool._reader_db
        if reader is not None:
            reader.close()
        self.spool._db.close()
        self.spool = SqliteSpool(self.dir / "s.db", sync="normal")
        self.cursor = 0
        self.taken = []
        self.acked = []  # ids are the process's own: a new one may use them again

    @invariant()
    def nothing_accepted_is_lost(self) -> None:
        everything = self.spool.fetch(0, 1_000_000)
        assert {m.id: (m.device, m.seq, m.payload) for m in everything} == self.model
        assert self.spool.count() == len(self.model)
        assert self.spool.size_bytes() == sum(
            len(payload) + len(f"p/{device}") + len(device) + ROW_OVERHEAD
            for device, _, payload in self.model.values())
        # The per-device counts (kept in memory, the acks of recent rows taken off them
        # without a query) are those of the table.
        assert self.spool._rows_of == dict(self.spool._db.execute(
            "SELECT device, COUNT(*) FROM messages GROUP BY device").fetchall())
        assert self.spool.last_seqs() == self.seqs


TestSpoolProperties = SpoolMachine.TestCase
TestSpoolProperties.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


class DelayedSpoolMachine(SpoolMachine):
    """The same with buffer.write_delay: rows wait in memory until flushed. A crash
    loses exactly the rows never flushed, and seq then jumps (never repeats)."""

    def __init__(self) -> None:
        super().__init__()
        self.spool.close()
        self.spool = SqliteSpool(self.dir / "s.db", sync="normal", write_delay=3600.0,
                                 lease_block=50)
        self.durable: set[int] = set()

    @rule()
    def flush(self) -> None:
        while self.spool.flush_due(float("inf")):
            pass
        self.durable |= set(self.model)

    @rule(device=DEVICES, n=st.integers(1, 20), acks=st.booleans())
    def put(self, device: str, n: int, acks: bool) -> None:
        before = set(self.model)
        super().put(device, n, acks)
        # New rows wait in memory, even under an id that an acknowledged, flushed row had
        # before a crash (ids start again above the highest one on disk).
        self.durable -= set(self.model) - before

    @rule(device=DEVICES, n=st.integers(1, 5))
    def crash_mid_write(self, device: str, n: int) -> None:
        super().crash_mid_write(device, n)

    def _crash(self) -> None:
        reader = self.spool._reader_db
        if reader is not None:
            reader.close()
        self.spool._db.close()
        self.spool = SqliteSpool(self.dir / "s.db", sync="normal", write_delay=3600.0,
                                 lease_block=50)
        self.cursor = 0
        self.taken = []
        self.acked = []  # ids are the process's own: a new one may use them again
        lost = [i for i in self.model if i not in self.durable]
        for i in lost:
            del self.model[i]
        seqs = self.spool.last_seqs()
        for device, seq in self.seqs.items():
            assert seqs.get(device, 0) >= seq, "a seq could be given twice after a crash"
        self.seqs = seqs


TestDelayedSpoolProperties = DelayedSpoolMachine.TestCase
TestDelayedSpoolProperties.settings = settings(max_examples=40, stateful_step_count=30,
                                               deadline=None)


class JournalSpoolMachine(SpoolMachine):
    """The same with the burst journal (buffer.journal, sync: full): bursts wait in
    memory and in a ring of six 4 KiB blocks, so the ring wraps every few steps and
    records still holding readings are overwritten only after those went to SQLite. A
    crash of the process (the page cache keeps every write) loses nothing accepted,
    gives no acknowledged reading back, and seq goes on exactly where it was: also for
    a device whose latest row left the ring long ago (its seq is carried)."""

    def _open(self) -> SqliteSpool:
        return SqliteSpool(self.dir / "s.db", sync="full", journal=True, journal_blocks=6)

    def __init__(self) -> None:
        super().__init__()
        self.spool.close()
        self.spool = self._open()

    @rule()
    def flush(self) -> None:
        """Time passes: what is held and not acknowledged goes to SQLite."""
        while self.spool.flush_due(float("inf")):
            pass

    @rule(device=DEVICES, n=st.integers(1, 5))
    def crash_mid_write(self, device: str, n: int) -> None:
        super().crash_mid_write(device, n)

    def _crash(self) -> None:
        spool = self.spool
        if spool._reader_db is not None:
            spool._reader_db.close()
        spool._db.close()
        if spool._syncer is not None:
            spool._syncer.close()  # its thread; the page cache keeps writes anyway
        if spool._journal is not None:
            spool._journal.close()
        self.spool = self._open()
        self.cursor = 0
        self.taken = []
        self.acked = []
        assert self.spool.last_seqs() == self.seqs, "seq moved across a crash"

    @invariant()
    def the_journal_is_used(self) -> None:
        assert self.spool._journal is not None


TestJournalSpoolProperties = JournalSpoolMachine.TestCase
TestJournalSpoolProperties.settings = settings(max_examples=40, stateful_step_count=30,
                                               deadline=None)
