"""The wake-up token (gateway.wakeup) and the sleepers built on it: none misses a wake-up."""

from __future__ import annotations

import random
import threading
import time

from gateway.outbox import Inbox
from gateway.wakeup import Wakeup
from tests.support import wait_until

JOIN = 10.0  # generous: only a hang (a lost wake-up) hits it


def test_a_wake_up_set_before_the_wait_is_kept_for_it() -> None:
    w = Wakeup()
    w.set()
    assert w.wait(30.0) is True  # at once: the token was there
    assert w.wait(0.01) is False  # taken: the next wait sleeps out its timeout


def test_wake_ups_do_not_pile_up() -> None:
    w = Wakeup()
    for _ in range(3):
        w.set()
    assert w.wait(0) is True
    assert w.wait(0.01) is False  # three sets, one wake-up: the sleeper checks its state


def test_clear_drops_a_pending_wake_up() -> None:
    w = Wakeup()
    w.set()
    w.clear()
    assert w.wait(0.01) is False
    w.clear()  # nothing pending: no error
    assert w.wait(0) is False


def test_another_thread_wakes_the_sleeper() -> None:
    w = Wakeup()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(w.wait(60.0)), name="test-sleeper")
    t.start()
    t.join(0.1)
    assert t.is_alive()  # asleep: nothing set yet
    w.set()
    t.join(JOIN)
    assert result == [True]


def test_inbox_consumer_misses_no_put_under_racing_producers() -> None:
    """Producers put at random moments while the consumer sleeps in get() and
    wait_len(): every item arrives, in each producer's order, and no get() sleeps out
    its (long) timeout while items wait, which a lost wake-up would do."""
    inbox = Inbox(50)
    producers, per_producer = 4, 500
    rng = random.Random(20261130)
    delays = [[rng.choice((0.0, 0.0, 0.0, 0.0001, 0.001)) for _ in range(per_producer)]
              for _ in range(producers)]

    def produce(p: int) -> None:
        for i in range(per_producer):
            if delays[p][i]:
                time.sleep(delays[p][i])
            assert inbox.put((p, i), 30.0)

    threads = [threading.Thread(target=produce, args=(p,), name=f"test-producer-{p}")
               for p in range(producers)]
    for t in threads:
        t.start()
    got: list[tuple[int, int]] = []
    slow = 0
    while len(got) < producers * per_producer:
        started = time.monotonic()
        item = inbox.get(JOIN)
        assert item is not None, f"get() slept out {JOIN} s with {len(inbox)} items queued"
        got.append(item)  # type: ignore[arg-type]
        if rng.random() < 0.3:
            # As the spooler does: wait for a few more, briefly, then take them all.
            inbox.wait_len(rng.randint(1, 5), 0.002)
            got.extend(inbox.take(100))  # type: ignore[arg-type]
        slow += time.monotonic() - started > 1.0
    for t in threads:
        t.join(JOIN)
    assert len(got) == producers * per_producer
    for p in range(producers):
        assert [i for q, i in got if q == p] == list(range(per_producer))
    assert slow == 0  # no wake-up was lost and found again only by a timeout


def test_wait_len_wakes_at_the_nth_item_and_times_out_short_of_it() -> None:
    inbox = Inbox(10)
    assert inbox.put("a", 0)
    assert inbox.wait_len(2, 0.02) is False  # one of two
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(inbox.wait_len(3, 60.0)),
                         name="test-wait-len")
    t.start()
    assert inbox.put("b", 0)
    t.join(0.1)
    assert t.is_alive()  # two of three: still asleep
    assert inbox.put("c", 0)
    t.join(JOIN)
    assert result == [True]
    assert wait_until(lambda: not t.is_alive(), JOIN)
