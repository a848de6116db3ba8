"""gateway.wakepipe: one byte per wake-up until drained, harmless after close."""

from __future__ import annotations

import select

from gateway.wakepipe import WakePipe


def test_wake_is_seen_by_select_drained_and_rearmed() -> None:
    pipe = WakePipe()
    try:
        assert select.select([pipe], [], [], 0)[0] == []
        for _ in range(1000):  # repeated wakes: one byte, never a full pipe
            pipe.wake()
        assert select.select([pipe], [], [], 0)[0] == [pipe]
        pipe.drain()
        assert select.select([pipe], [], [], 0)[0] == []
        pipe.wake()  # drained: a wake writes again
        assert select.select([pipe], [], [], 0)[0] == [pipe]
    finally:
        pipe.close()


def test_wake_and_close_after_close_do_nothing() -> None:
    pipe = WakePipe()
    pipe.close()
    pipe.wake()
    pipe.close()
