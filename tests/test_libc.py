"""gateway.libc: glibc's allocator knobs do what the daemon relies on them for."""

from __future__ import annotations

import platform

from gateway.libc import limit_malloc_arenas, trim_heap


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_trim_gives_back_the_free_pages_a_backlog_left_in_the_heap() -> None:
    assert platform.libc_ver()[0] == "glibc"  # Debian, Raspberry Pi OS
    # 60 MiB of 1 KiB blocks (malloc'd: above pymalloc's 512 bytes), every 64th kept:
    # the rest is free but fragmented, so free() alone keeps the pages mapped.
    blocks = [bytes(1024) for _ in range(60 * 1024)]
    kept = blocks[::64]
    del blocks
    before = rss_kib()
    assert trim_heap()
    after = rss_kib()
    assert before - after > 20 * 1024, (before, after)
    assert len(kept) == 960


def test_arena_limit_is_accepted() -> None:
    assert limit_malloc_arenas(2) is (platform.libc_ver()[0] == "glibc")
