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
from dataclasses import dataclass

from gateway.clock import default_clock
from gateway.health import SpoolFigures
from gateway.outbox.inbox import Inbox
from gateway.outbox.spool import MemorySpool, Message, NewRow, Spool, SqliteSpool
from gateway.reading import Reading, encode_payload

log = logging.getLogger("gateway.outbox")


@dataclass
class OutboxStats:
    accepted: int = 0  # committed to the spool
    delivered: int = 0  # acknowledged by the broker and deleted
    dropped_oldest: int = 0  # removed to make room (drop_oldest)
    rejected: int = 0  # refused because the spool was full (reject_new)
    overflowed: int = 0  # refused because the in-memory queue was full (spool stuck)
    commits: int = 0
    spool_errors: int = 0
    unencodable: int = 0
    thread_errors: int = 0  # exceptions that escaped a round of the spooler (it went on)
    last_commit_at: float = 0.0


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


#: Group commit pacing (see Outbox._group_pause).
PACE = 2.0
MAX_GROUP_PAUSE = 0.01

_STOP = object()
_ACKS_WAITING = object()  # wakes an idle spooler: acks arrived (they wait in _acks)


def open_spool(
    durability: str,
    path: str,
    *,
    max_messages: int,
    max_bytes: int,
    when_full: str,
    sync: str = "full",
) -> Spool:
    if durability == "memory":
        return MemorySpool(max_messages=max_messages, max_bytes=max_bytes,
                           when_full=when_full)  # type: ignore[arg-type]
    return SqliteSpool(path, max_messages=max_messages, max_bytes=max_bytes,
                       when_full=when_full, sync=sync)  # type: ignore[arg-type]


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
        self._last_commit_end = 0.0  # monotonic; with its cost: pacing (_group_pause)
        self._last_commit_cost = 0.0
        self._full_since: float | None = None
        self._burst_dropped = 0
        self.stats = OutboxStats()
        #: Told the thread's name when a round of the spooler raised (Health.thread_error).
        self.on_thread_error: Callable[[str], None] | None = None
        self.error: BaseException | None = None

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
        """Commit what is queued, then stop the spooler and close the spool."""
        if self._thread is not None and self._thread.is_alive():
            if self._inbox.put(_STOP, timeout):
                self._urgent.set()
            else:
                log.error("outbox queue stuck full at stop; %d readings lost", len(self._inbox))
            self._thread.join(timeout)
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
        if first:
            # A full inbox means a busy spooler: the acks ride with its next commit.
            self._inbox.put(_ACKS_WAITING, 0)

    def depth(self) -> int:
        """Readings accepted and not yet acknowledged, plus those still queued."""
        return self.spool.count() + len(self._inbox)

    def figures(self) -> SpoolFigures:
        """The spool's figures for the health topic."""
        s = self.stats
        return SpoolFigures(depth=self.spool.count(), bytes=self.spool.size_bytes(),
                            dropped=s.dropped_oldest, rejected=s.rejected, accepted=s.accepted,
                            delivered=s.delivered, commits=s.commits)

    # -- the spooler thread ---------------------------------------------------------
    def _run(self) -> None:
        from gateway.threadguard import run_guarded

        def count(exc: Exception) -> None:
            self.stats.thread_errors += 1
            if self.on_thread_error is not None:
                self.on_thread_error("outbox-spooler")

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
            item = inbox.get()
            if item is _ACKS_WAITING:
                # Acks alone need no commit of their own: they ride along with the next
                # readings (10 sensors at 1 Hz: one transaction a second, not two).
                until = time.monotonic() + self.ack_delay
                while item is _ACKS_WAITING:
                    item = inbox.get(max(0.0, until - time.monotonic()))
            batch = [] if item is None or item is _ACKS_WAITING else [item]
            stop = item is _STOP
            if isinstance(item, Reading) and len(inbox) < self.commit_max_rows:
                # An explicit commit window: let it fill without waking per reading; a
                # flush or a stop cuts it short. A backlog is committed at once. Without
                # one (the default) this is group commit: an idle spooler commits a
                # reading at once, and what arrives during that commit (its fsync) goes
                # into the next one, so batches grow with the load, not with a timer.
                self._urgent.wait(self.commit_interval or self._group_pause())
            self._urgent.clear()
            if not stop:
                more = inbox.take(self.commit_max_rows - len(batch))
                batch.extend(more)
                stop = any(m is _STOP for m in more)
            with self._acks_lock:
                acked, self._acks = self._acks, []
            self._commit(batch, acked)
            if stop:
                return

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

    def _commit_batch(self, batch: list[object], acked: list[int]) -> None:
        readings = [b for b in batch if isinstance(b, Reading)]
        flushes = [b for b in batch if isinstance(b, _Flush)]
        rows: list[NewRow] = []
        seqs = self._seqs
        if readings:
            # Only accepted readings get a seq, so a refused one leaves no gap.
            seqs = dict(seqs)
            prefix = self.topic_prefix
            stamp = default_clock().stamp
            for r in readings:
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
        if not rows and not acked:
            for f in flushes:
                f.done.set()
            return
        while True:
            try:
                result = self.spool.write(rows, acked)
                break
            except Exception as exc:  # noqa: BLE001 - disk errors must not kill the pipeline
                self.stats.spool_errors += 1
                if self.stats.spool_errors in (1, 10) or self.stats.spool_errors % 100 == 0:
                    log.error("spool write failed (%s); retrying", exc)
                time.sleep(min(5.0, 0.1 * self.stats.spool_errors))
        if result.rejected:
            # Refused rows are a tail of the batch: roll their seqs back (no gaps).
            seqs = dict(self._seqs)
            for m in result.stored:
                seqs[m.device] = m.seq
            self._note_full(result.rejected, rejected=True)
        self._seqs = seqs
        self.stats.commits += 1
        self.stats.last_commit_at = time.time()
        self.stats.accepted += len(result.stored)
        self.stats.delivered += len(acked)
        if result.dropped:
            self._caught_up = False
            self._recent.clear()  # it may hold rows the policy just dropped
            self._note_full(result.dropped, rejected=False)
        elif rows and self._full_since is not None and self.spool.count() < _low_water(
            self.spool
        ):
            self._end_full_burst()
        for f in flushes:
            f.done.set()
        if result.stored:
            self._recent.extend(result.stored)
            for cb in self._listeners:
                cb()

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
