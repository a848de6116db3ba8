"""The outbox: the only path from readers to the broker.

    readers --put()--> [bounded queue] --spooler thread--> spool (SQLite/memory)
    publisher <--take()-- spool ; publisher --ack()--> [queue] --> spooler deletes

A reading is *accepted* once the spooler has committed it; only then does it
get its `seq` (so a reading lost before commit leaves no gap). Group commit: an
idle spooler commits a reading at once; readings that arrive while a commit is
under way (or within `commit_interval`, if one is set) share the next transaction,
and acknowledgements ride along in the same transactions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from gateway.clock import default_clock
from gateway.health import SpoolFigures
from gateway.libc import trim_heap
from gateway.outbox.faults import SpoolState, SpoolWriteError
from gateway.outbox.inbox import Inbox
from gateway.outbox.spool import (
    IDENTITY_CHECK_INTERVAL,
    MemorySpool,
    Message,
    NewRow,
    Spool,
    SqliteSpool,
)
from gateway.reading import Reading, encode_payload, format_ts
from gateway.slots import SlotsRecord

log = logging.getLogger("gateway.outbox")


class OutboxStats(SlotsRecord):
    __slots__ = ("accepted", "delivered", "dropped_oldest", "rejected", "overflowed",
                 "lost_at_stop", "commits", "spool_errors", "unencodable", "thread_errors",
                 "recreated", "last_commit_at")

    def __init__(self) -> None:
        self.accepted = 0  # committed to the spool
        self.delivered = 0  # acknowledged by the broker and deleted
        self.dropped_oldest = 0  # removed to make room (drop_oldest)
        self.rejected = 0  # refused because the spool was full (reject_new)
        self.overflowed = 0  # refused because the in-memory queue was full (spool stuck)
        self.lost_at_stop = 0  # never accepted: still waiting in memory when the stop gave up
        self.commits = 0
        self.spool_errors = 0  # failed spool transactions
        self.unencodable = 0
        self.thread_errors = 0  # exceptions that escaped a round of the spooler (it went on)
        self.recreated = 0  # spool file found deleted/replaced and written anew
        self.last_commit_at = 0.0


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


#: Group commit pacing (see Outbox._group_pause).
PACE = 2.0
MAX_GROUP_PAUSE = 0.01
#: Bursts (see Outbox._settle): an idle spooler waits for as many readings as the last
#: burst had, at most SETTLE_SHARE of the time since the last burst began (within
#: SETTLE_MIN..SETTLE_MAX); readings taken within that wait plus BURST_SLACK of the
#: first are one burst.
BURST_SLACK = 0.003
SETTLE_MIN = 0.002
SETTLE_MAX = 0.005
SETTLE_SHARE = 0.005
#: A backlog of at least BACKLOG_TRIM readings that has drained below BACKLOG_DONE:
#: the memory its delivery used is given back (gateway.libc.trim_heap).
BACKLOG_TRIM = 2000
BACKLOG_DONE = 100
#: While the spool refuses writes: first retry after RETRY_MIN s, doubling up to RETRY_MAX.
RETRY_MIN = 0.05
RETRY_MAX = 2.0
#: At most this often (and when idle, every IDENTITY_CHECK_INTERVAL) the spooler
#: checks that the spool's path still names the file it writes to.
FILE_CHECK_INTERVAL = 1.0

_STOP = object()
_ACKS_WAITING = object()  # wakes an idle spooler: acks arrived (they wait in _acks)


def settle_limit(since_last_burst: float) -> float:
    """How long an idle spooler waits for the rest of a burst (see Outbox._settle)."""
    return min(SETTLE_MAX, max(SETTLE_MIN, SETTLE_SHARE * since_last_burst))


def open_spool(
    durability: str,
    path: str,
    *,
    max_messages: int,
    max_bytes: int,
    when_full: str,
    sync: str = "full",
    write_delay: float = 0.0,
    journal: bool = False,
) -> Spool:
    if durability == "memory":
        return MemorySpool(max_messages=max_messages, max_bytes=max_bytes,
                           when_full=when_full)  # type: ignore[arg-type]
    return SqliteSpool(path, max_messages=max_messages, max_bytes=max_bytes,
                       when_full=when_full, sync=sync,  # type: ignore[arg-type]
                       write_delay=write_delay, journal=journal)


class Outbox:
    def __init__(
        self,
        spool: Spool,
        topic_prefix: str,
        *,
        commit_interval: float = 0.0,
        commit_max_rows: int = 500,
        queue_size: int = 10_000,
        put_timeout: float = 1.0,
        recent_size: int = 4096,
        ack_delay: float = 5.0,
    ) -> None:
        self.spool = spool
        self.topic_prefix = topic_prefix
        self.commit_interval = commit_interval
        self.commit_max_rows = commit_max_rows
        self.ack_delay = ack_delay
        self.put_timeout = put_timeout
        self._inbox = Inbox(queue_size)
        # Acknowledged ids for the next commit. Not in the inbox: the publisher must
        # never wait behind readings for room.
        self._acks: list[int] = []
        self._acks_lock = threading.Lock()
        self._seqs = spool.last_seqs()
        self._listeners: list[Callable[[], None]] = []
        self._urgent = threading.Event()  # ends a commit window early (flush, stop)
        self._thread: threading.Thread | None = None
        self._cursor = 0  # id of the last message handed to the publisher
        # Messages just committed, so the publisher need not read back what the spooler
        # wrote a moment ago. A hint only: on any gap take() reads the spool itself.
        self._recent: deque[Message] = deque(maxlen=recent_size)
        # The last spool read found nothing past the cursor: until the spooler commits
        # (and fills `_recent`) or the cursor is rewound, there is nothing to read back.
        self._caught_up = False
        # Rows handed to the publisher between their INSERT and the COMMIT, so they go
        # out while the commit's fsync runs (`_stage`); and how many rewinds there had
        # been then (one since means they must be handed over again after the commit).
        self._staged: list[Message] = []
        self._staged_at_rewind = 0
        self._rewinds = 0
        self._last_commit_end = 0.0  # monotonic; with its cost: pacing (_group_pause)
        self._last_commit_cost = 0.0
        self._burst_start = 0.0  # monotonic: the first reading of the current burst
        self._burst_span = SETTLE_MIN + BURST_SLACK  # readings this soon after it count
        self._burst_seen = 0  # readings taken in the current burst so far
        self._burst_expect = 0  # how many the last burst had
        self._backlog_peak = 0  # the most readings the spool held since the last trim
        self._full_since: float | None = None
        self._burst_dropped = 0
        self.stats = OutboxStats()
        #: Told the thread's name when a round of the spooler (or of a thread of the
        #: spool's own, its syncer) raised (Health.thread_error).
        self.on_thread_error: Callable[[str], None] | None = None
        spool.watch_threads(self._thread_failed)
        self.error: BaseException | None = None
        # Taken from the inbox, not yet committed because the spool refused the insert
        # (readings without a seq, and flushes), in the order put. At most commit_max_rows.
        self._pending: list[object] = []
        self._failures = 0  # consecutive failed spool writes (retry backoff)
        self._insert_limit = commit_max_rows  # rows per insert; halved on SQLITE_FULL
        self._inserted = True  # the last insert worked
        self._stop_at: float | None = None  # monotonic deadline of stop()
        self._stop_taken = False  # _STOP taken: everything put before it is in hand
        self._next_file_check = 0.0
        self._flush_retry_at = 0.0  # monotonic: held rows failed to reach the disk
        self.spool_state: SpoolState = "ok"
        self.spool_error: str | None = None
        self._state_since = time.time()
        self._state_listeners: list[Callable[[], None]] = []

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-spooler", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything put so far is committed (or `timeout`)."""
        if not self.alive:
            return False
        f = _Flush()
        if not self._inbox.put(f, timeout):
            return False
        self._urgent.set()
        return f.done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the spooler and close the spool.

        Returns within about `timeout` whatever the disk does: if the spool still
        refuses writes then, what waits in memory (never accepted) is dropped, counted
        (`lost_at_stop`) and logged.
        """
        deadline = time.monotonic() + timeout
        if self._thread is not None and self._thread.is_alive():
            self._stop_at = deadline
            self._urgent.set()
            self._inbox.put(_STOP, timeout)  # full (spool refusing): the deadline ends it
            self._urgent.set()
            self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
            if self._thread.is_alive():
                log.error("outbox spooler did not stop within %.1f s", timeout)
                return
        self.spool.close()

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the spooler thread) after each commit of new rows."""
        self._listeners.append(callback)

    # -- readers' side -------------------------------------------------------------
    def put(self, reading: Reading) -> bool:
        """Queue a reading for the spool; False if it had to be refused.

        When the spooler falls behind (the queue is full), the reader waits up to
        `put_timeout` for room: a stream reader then leaves its bytes in the kernel
        (and a USB device waits on flow control), a poller skips the slots it missed.
        Readings are refused, counted and logged only if the spool stays stuck.
        """
        if self._inbox.put(reading, self.put_timeout):
            return True
        self.stats.overflowed += 1
        if self.stats.overflowed == 1 or self.stats.overflowed % 1000 == 0:
            log.error(
                "outbox queue full for %.1f s (spool stuck?): %d readings refused so far",
                self.put_timeout, self.stats.overflowed,
            )
        return False

    # -- publisher's side -------------------------------------------------------------
    def take(self, limit: int) -> list[Message]:
        """The next `limit` accepted messages after the last ones taken, oldest first."""
        recent = self._recent
        cursor = self._cursor
        while recent and recent[0].id <= cursor:
            recent.popleft()
        if recent and recent[0].id == cursor + 1:
            msgs: list[Message] = []
            while recent and len(msgs) < limit:
                m = recent.popleft()
                if m.id != cursor + 1:  # a gap (rows dropped): let the spool answer
                    recent.appendleft(m)
                    break
                msgs.append(m)
                cursor = m.id
        elif not recent and self._caught_up:
            return []  # live and up to date: no query per publisher round
        else:
            msgs = self.spool.fetch(cursor, limit)
            # Rows committed after this read are in `_recent` (the spooler extends it
            # after each commit), so an empty `_recent` now means nothing is waiting.
            self._caught_up = len(msgs) < limit
        if msgs:
            self._cursor = msgs[-1].id
        return msgs

    def rewind(self) -> None:
        """Start taking again from the oldest unacknowledged message."""
        self._rewinds += 1
        self._caught_up = False
        self._cursor = 0
        self._recent.clear()

    def ack(self, ids: Iterable[int]) -> None:
        """These messages reached the broker: delete them (in the next commit)."""
        batch = list(ids)
        if not batch:
            return
        with self._acks_lock:
            first = not self._acks
            self._acks.extend(batch)
        if self._pending:
            self._urgent.set()  # the spool refuses inserts: delete these now (frees space)
        elif first and self.ack_delay < IDENTITY_CHECK_INTERVAL:
            # Wake the spooler to wait for readings to ride with, no longer than
            # ack_delay. Not needed when ack_delay is at least the idle spooler's own
            # wake-up interval (the default): the acks then ride with the next readings
            # or go at that wake-up, and a wake-up per burst of readings is saved.
            # A full inbox means a busy spooler: the acks ride with its next commit.
            self._inbox.put(_ACKS_WAITING, 0)

    def depth(self) -> int:
        """Readings accepted and not yet acknowledged, plus those waiting in memory."""
        return self.spool.count() + len(self._inbox) + len(self._pending)

    def figures(self) -> SpoolFigures:
        """The spool's figures for the health topic."""
        s = self.stats
        files_bytes = getattr(self.spool, "files_bytes", None)
        return SpoolFigures(depth=self.spool.count(), bytes=self.spool.size_bytes(),
                            dropped=s.dropped_oldest, rejected=s.rejected, accepted=s.accepted,
                            delivered=s.delivered, commits=s.commits, state=self.spool_state,
                            error=self.spool_error, since=format_ts(self._state_since),
                            file_bytes=files_bytes() if files_bytes is not None else 0,
                            waiting=len(self._pending) + len(self._inbox),
                            refused=s.overflowed, unencodable=s.unencodable,
                            errors=s.spool_errors, recreated=s.recreated)

    def _thread_failed(self, name: str) -> None:
        self.stats.thread_errors += 1
        if self.on_thread_error is not None:
            self.on_thread_error(name)

    # -- the spooler thread ---------------------------------------------------------
    def _run(self) -> None:
        from gateway.threadguard import run_guarded

        def count(exc: Exception) -> None:
            self._thread_failed("outbox-spooler")

        def pause(seconds: float) -> bool:
            time.sleep(seconds)  # the loop starts over and finds a stop in the inbox
            return False

        try:
            run_guarded("outbox spooler", self._loop, on_error=count, wait=pause, max_pause=1.0)
        except BaseException as exc:
            self.error = exc
            log.critical("outbox spooler died: %r", exc, exc_info=True)
            raise

    def _loop(self) -> None:
        inbox = self._inbox
        while True:
            if self._pending:
                # The spool refused the last insert: they wait here, in order and without
                # a seq, while the readers wait for room in the inbox. Acks, a stop and
                # the retry timer end the wait.
                self._urgent.wait(self._retry_wait())
                self._urgent.clear()
                room = self.commit_max_rows - len(self._pending)
                batch = inbox.take(room) if room > 0 and not self._stop_taken else []
            else:
                item = inbox.get(self._idle_wait())
                if item is _ACKS_WAITING:
                    # Acks alone need no commit of their own: they ride along with the next
                    # readings (10 sensors at 1 Hz: one transaction a second, not two).
                    until = time.monotonic() + self.ack_delay
                    while item is _ACKS_WAITING:
                        item = inbox.get(max(0.0, until - time.monotonic()))
                batch = [] if item is None or item is _ACKS_WAITING else [item]
                if isinstance(item, Reading) and not self.commit_interval:
                    self._settle()
                if isinstance(item, Reading) and len(inbox) < self.commit_max_rows:
                    # An explicit commit window: let it fill without waking per reading; a
                    # flush or a stop cuts it short. A backlog is committed at once. Without
                    # one (the default) this is group commit: an idle spooler commits a
                    # reading at once, and what arrives during that commit (its fsync) goes
                    # into the next one, so batches grow with the load, not with a timer.
                    pause = self.commit_interval or self._group_pause()
                    if pause > 0:  # an idle spooler (the usual case) commits at once
                        self._urgent.wait(pause)
                self._urgent.clear()
                if item is not _STOP:
                    batch.extend(inbox.take(self.commit_max_rows - len(batch)))
            if any(b is _STOP for b in batch):
                self._stop_taken = True
            if time.monotonic() - self._burst_start <= self._burst_span:
                self._burst_seen += sum(isinstance(b, Reading) for b in batch)
            with self._acks_lock:
                acked, self._acks = self._acks, []
            self._check_file()
            self._commit([b for b in batch if b is not _STOP and b is not _ACKS_WAITING], acked)
            self._flush_due()
            if self._stop_taken and not self._pending:
                return
            if self._stop_at is not None and time.monotonic() >= self._stop_at:
                self._give_up_at_stop()
                return

    def _idle_wait(self) -> float:
        """How long an idle spooler sleeps: until the next file check, or until held
        rows (buffer.write_delay) are due on disk."""
        due = self.spool.next_due()
        if due is None:
            return IDENTITY_CHECK_INTERVAL
        due = max(due, self._flush_retry_at)
        return min(IDENTITY_CHECK_INTERVAL, max(0.0, due - time.monotonic()) + 0.001)

    def _flush_due(self) -> None:
        """buffer.write_delay: write the held rows not acknowledged in time."""
        now = time.monotonic()
        if self._pending or now < self._flush_retry_at:
            return  # the spool refuses writes: retried with backoff
        try:
            written = self.spool.flush_due()
        except Exception as exc:  # noqa: BLE001 - any spool failure: they stay held
            self._spool_failed(exc)
            self._flush_retry_at = now + min(RETRY_MAX, RETRY_MIN * 2.0 ** min(self._failures, 10))
            return
        self._flush_retry_at = 0.0
        if written:
            self._set_state("ok", None)

    def _settle(self) -> None:
        """Sensors polled in step (10 at 1 Hz) hand in their readings within a
        millisecond or two. An idle spooler woken by the first would commit it alone and
        the rest in a second commit: two fsyncs, and each dirties a 4 KiB page of the
        WAL again (docs/small-pi.md). So the spooler learns how many readings the last
        burst had and waits until that many are in hand: one commit per burst. A lone
        reading (bursts of one) does not wait at all.

        The wait is bounded by the bursts' own pace: 0.5 % of the time since the last
        burst began, within 2..5 ms. Bursts a second apart wait up to 5 ms for a
        straggler (a bus thread the scheduler or the GIL held back): an fsync saved per
        second for a few ms on a reading taken once a second. Bursts 10 ms apart wait
        at most 2 ms: their latency matters more than their commits."""
        now = time.monotonic()
        since = now - self._burst_start
        if since <= self._burst_span:
            return  # within a burst, already committing
        self._burst_expect, self._burst_start, self._burst_seen = self._burst_seen, now, 0
        limit = settle_limit(since)
        self._burst_span = limit + BURST_SLACK
        more = min(self._burst_expect, self.commit_max_rows) - 1  # this one is in hand
        if more > 0:
            self._inbox.wait_len(more, limit)

    def _group_pause(self) -> float:
        """Group commit under sustained load: a reading that arrives right after a commit
        waits until the spooler has been idle for PACE times that commit's duration
        (at most MAX_GROUP_PAUSE). The spooler then spends at most 1/(1+PACE) of its
        time committing, and leaves the GIL and the disk to the publisher (a backlog
        drains while readings keep coming); an idle spooler does not wait at all."""
        due = self._last_commit_end + PACE * self._last_commit_cost - time.monotonic()
        return min(max(0.0, due), MAX_GROUP_PAUSE)

    def _commit(self, batch: list[object], acked: list[int]) -> None:
        started = time.monotonic()
        try:
            self._commit_batch(batch, acked)
        finally:
            self._last_commit_end = time.monotonic()
            self._last_commit_cost = self._last_commit_end - started

    def _retry_wait(self) -> float:
        if self._inserted:
            return 0.0  # the last insert worked: the rest of what waits goes on at once
        wait: float = min(RETRY_MAX, RETRY_MIN * 2.0 ** min(self._failures, 10))
        if self._stop_at is not None:
            wait = min(wait, max(0.0, self._stop_at - time.monotonic()))
        return wait

    def _give_up_at_stop(self) -> None:
        waiting = sum(isinstance(p, Reading) for p in self._pending) + sum(
            isinstance(p, Reading) for p in self._inbox.take(len(self._inbox)))
        self._pending = []
        if waiting:
            self.stats.lost_at_stop += waiting
            log.error("stop: the spool is %s (%s): %d readings that were never accepted are "
                      "dropped (any handed to the publisher before a commit that failed "
                      "leave a gap in seq: they may have reached the broker, so their seqs "
                      "are not given again)", self.spool_state, self.spool_error, waiting)

    def _check_file(self) -> None:
        """Every so often: does the spool's path still name the file we write to?"""
        now = time.monotonic()
        if now < self._next_file_check:
            return
        self._next_file_check = now + FILE_CHECK_INTERVAL
        what = self.spool.check_file()
        if what is None:
            return
        self._set_state("missing", f"the spool file {getattr(self.spool, 'path', '?')} was "
                        f"{what} while in use; writing it anew from the open file")
        try:
            self.spool.recreate()
        except Exception as exc:  # noqa: BLE001 - retried at the next check
            self._failures += 1
            log.debug("recreating the spool failed: %r", exc)
            self._next_file_check = now + self._retry_wait()
            return
        self.stats.recreated += 1
        self._caught_up = False
        self._recent.clear()  # ids are the same, but let the publisher read the new file
        self._set_state("ok", None)

    def _commit_batch(self, batch: list[object], acked: list[int]) -> None:
        items = self._pending + batch
        self._pending = []
        rows, items = self._rows_for(items)
        later: list[object] = []
        if len(rows) > self._insert_limit:
            # After SQLITE_FULL: fewer rows per transaction, so the pages that deletes
            # freed inside the file are used even when a whole batch would not fit.
            cut = [i for i, b in enumerate(items) if isinstance(b, Reading)][self._insert_limit]
            items, later, rows = items[:cut], items[cut:], rows[:self._insert_limit]
        flushes = [b for b in items if isinstance(b, _Flush)]
        self._staged = []
        if acked and rows and self._inserted:
            # Acks and readings in one transaction: one fsync, each page written once.
            try:
                result = self.spool.write(rows, acked, self._stage)
            except Exception as exc:  # noqa: BLE001 - any spool failure: kept, retried
                # Nothing of it happened. The deletes alone may still commit (a full disk
                # takes no new rows but lets acknowledged ones go): they free the space.
                self._unstage()
                self._delete_alone(acked, items)
                self._insert_failed(items + later, rows, exc)
                return
            self.stats.delivered += len(acked)
        else:
            if acked:
                self._delete_alone(acked, items)
            if not rows:
                for f in flushes:
                    f.done.set()
                return
            try:
                result = self.spool.insert(rows, self._stage if self._inserted else None)
            except Exception as exc:  # noqa: BLE001 - disk errors must not kill the pipeline
                self._unstage()
                self._insert_failed(items + later, rows, exc)
                return
        self._pending = later
        self._insert_limit = min(self.commit_max_rows, self._insert_limit * 2)
        self._inserted = True
        if not later:  # "writable again" once nothing waits (no flapping while it drains)
            self._set_state("ok", None)
        seqs = dict(self._seqs)
        for m in result.stored:  # refused rows (reject_new) are a tail: their seqs unused
            seqs[m.device] = m.seq
        self._seqs = seqs
        if result.rejected:
            self._note_full(result.rejected, rejected=True)
        self.stats.commits += 1
        self.stats.last_commit_at = time.time()
        self.stats.accepted += len(result.stored)
        if result.dropped:
            self._caught_up = False
            self._recent.clear()  # it may hold rows the policy just dropped
            self._note_full(result.dropped, rejected=False)
        elif self._full_since is not None and self.spool.count() < _low_water(self.spool):
            self._end_full_burst()
        for f in flushes:
            f.done.set()
        if result.stored and (not self._staged or self._rewinds != self._staged_at_rewind
                              or self._staged[-1].id != result.stored[-1].id):
            # Not handed over yet (or not these), or a rewind cleared them before this
            # commit made them visible to the publisher's read of the spool.
            self._recent.extend(result.stored)
            for cb in self._listeners:
                cb()
        self._staged = []
        self._trim_after_backlog()

    def _stage(self, stored: list[Message]) -> None:
        """The spool has given these rows their ids and is about to write and COMMIT
        them: hand them to the publisher now, so they travel to the broker while the
        transaction and its fsync run instead of after them (latency: docs/spool.md).
        They are deleted only on a PUBACK, which the spooler handles after this commit;
        a power cut before the COMMIT loses them as it loses readings not yet written,
        unless they arrived."""
        self._staged = stored
        self._staged_at_rewind = self._rewinds
        self._recent.extend(stored)
        for cb in self._listeners:
            cb()

    def _unstage(self) -> None:
        """The commit of handed-over rows failed: they are not in the spool. Their
        readings wait and are written again with the same seqs and new ids (the spool
        never reuses a handed-over id, so a late PUBACK deletes nothing); the publisher,
        its cursor below those new ids, takes them from the spool. A copy already sent is
        a duplicate with the same seq, as after a reconnect."""
        if not self._staged:
            return
        self._staged = []
        self._caught_up = False
        self._recent.clear()

    def _trim_after_backlog(self) -> None:
        """Once a backlog (a broker outage) has been delivered, give the heap its
        delivery grew back to the system: RSS then stays flat over outages."""
        depth = self.spool.count()
        if depth > self._backlog_peak:
            self._backlog_peak = depth
        elif self._backlog_peak >= BACKLOG_TRIM and depth < BACKLOG_DONE:
            self._backlog_peak = depth
            self.spool.release_memory()
            trim_heap()

    def _delete_alone(self, acked: list[int], items: list[object]) -> None:
        """Deletes in a transaction of their own: they free space even while inserts
        fail. On failure the acks are kept for the next round."""
        try:
            self.spool.delete(acked)
        except Exception as exc:  # noqa: BLE001 - any spool failure: kept, retried
            with self._acks_lock:
                self._acks[:0] = acked
            self._spool_failed(exc)
        else:
            self.stats.delivered += len(acked)
            if not items:
                self._set_state("ok", None)

    def _insert_failed(self, items: list[object], rows: list[NewRow], exc: Exception) -> None:
        self._pending = items  # in order, no seq given: retried, never dropped
        if getattr(exc, "state", None) == "full":
            self._insert_limit = max(1, len(rows) // 2)
        self._inserted = False
        self._spool_failed(exc)

    def _rows_for(self, items: list[object]) -> tuple[list[NewRow], list[object]]:
        """Rows for the readings among `items`, with their seqs; and `items` without the
        readings that cannot be encoded (refused, counted and logged once)."""
        rows: list[NewRow] = []
        kept: list[object] = []
        seqs = dict(self._seqs)
        prefix = self.topic_prefix
        stamp = default_clock().stamp
        for r in items:
            if not isinstance(r, Reading):
                kept.append(r)
                continue
            # Only accepted readings get a seq, so a refused one leaves no gap.
            seq = seqs.get(r.device, 0) + 1
            ts, clock = stamp(r.ts, r.mono)  # corrected or marked if the clock was not synced
            try:
                payload = encode_payload(seq, ts, r.values, clock)
            except Exception as exc:  # noqa: BLE001 - any type: this reading, not the round
                # A value JSON cannot carry: refuse this reading, keep the rest.
                self.stats.unencodable += 1
                log.error("%s: reading cannot be encoded as JSON (%s); dropped", r.device, exc)
                continue
            seqs[r.device] = seq
            rows.append(NewRow(r.device, f"{prefix}/{r.device}", seq, payload))
            kept.append(r)
        return rows, kept

    # -- spool state -------------------------------------------------------------------
    def _spool_failed(self, exc: BaseException) -> None:
        self.stats.spool_errors += 1
        self._failures += 1
        if isinstance(exc, SpoolWriteError):
            state, text = exc.state, str(exc)
        else:
            state, text = "io_error", f"{type(exc).__name__}: {exc}"
        if state == "full":
            # Make the next try reuse the WAL from its start instead of growing it.
            checkpoint = getattr(self.spool, "checkpoint", None)
            if checkpoint is not None:
                checkpoint("RESTART")
        self._set_state(state, text)

    def _set_state(self, state: SpoolState, text: str | None) -> None:
        """Log a change of the spool's state once, and tell health about it."""
        if state == "ok":
            self._failures = 0
        if state == self.spool_state:
            if text is not None:
                self.spool_error = text
            return
        was, since = self.spool_state, self._state_since
        self.spool_state, self.spool_error = state, text
        self._state_since = time.time()
        waiting = sum(isinstance(p, Reading) for p in self._pending) + len(self._inbox)
        if state == "ok":
            log.warning("spool %s: writable again after %.0f s (%s); %d readings waiting in "
                        "memory are being stored", getattr(self.spool, "path", ""),
                        self._state_since - since, was, waiting)
        else:
            log.error("spool %s: %s. Nothing is accepted until this is fixed: new readings "
                      "wait in memory (readers slow down, then readings are refused and "
                      "counted); acknowledged ones are still deleted",
                      getattr(self.spool, "path", ""), text)
        for cb in self._state_listeners:
            cb()

    def on_state_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the spooler thread) when the spool's state changes."""
        self._state_listeners.append(callback)

    def _note_full(self, n: int, *, rejected: bool) -> None:
        if rejected:
            self.stats.rejected += n
        else:
            self.stats.dropped_oldest += n
        if self._full_since is None:
            self._full_since = time.monotonic()
            policy = "rejecting new readings" if rejected else "dropping the oldest readings"
            log.warning("spool full (%d readings): %s until there is room",
                        self.spool.count(), policy)
        self._burst_dropped += n

    def _end_full_burst(self) -> None:
        assert self._full_since is not None
        log.warning(
            "spool has room again: %d readings were lost to the full spool over %.0f s",
            self._burst_dropped, time.monotonic() - self._full_since,
        )
        self._full_since = None
        self._burst_dropped = 0


def _low_water(spool: Spool) -> int:
    cap = getattr(spool, "max_messages", 0)
    return int(cap * 0.95) if cap else 0
