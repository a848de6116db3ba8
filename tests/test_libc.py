"""gateway.libc: glibc's allocator knobs do what the daemon relies on them for."""

from __future__ import annotations

import gc
import platform
from pathlib import Path

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


def test_the_daemon_takes_its_startup_objects_out_of_the_collectors_walk(tmp_path: Path) -> None:
    """`run` freezes what start-up built before the readers start: a full collection
    then walks only objects made since (a 20 ms stop of every thread with ~40,000
    objects on a desktop core, the largest single delay in bench_latency)."""
    from gateway.commands.run import freeze_startup_objects
    from gateway.config import load_config
    from gateway.daemon import Gateway
    from tests.support import write_config

    cfg = write_config(tmp_path / "c.yaml", f"""
gateway: {{id: gc, simulate: true}}
mqtt: {{host: 127.0.0.1, port: 1}}
buffer: {{path: {tmp_path / "s.db"}}}
devices:
  - {{name: t0, driver: tmp102, bus: 1, address: 0x48, interval: 1s}}
""")
    gw = Gateway(load_config(cfg))
    try:
        walked_before = len(gc.get_objects())
        frozen = freeze_startup_objects()
        walked_after = len(gc.get_objects())
        assert frozen == gc.get_freeze_count() >= 10_000
        assert walked_after < walked_before // 10, (walked_before, walked_after)
    finally:
        gc.unfreeze()
        gw.outbox.spool.close()


def test_threads_guarded_by_run_guarded_carry_their_names_into_the_kernel() -> None:
    """`top -H` and /proc/PID/task/TID/comm show each thread's name (cut to 15 bytes),
    not the interpreter's, so the CPU of each thread can be told apart."""
    import threading

    from gateway.threadguard import run_guarded

    seen: list[str] = []

    def loop() -> None:
        tid = threading.get_native_id()
        seen.append(Path(f"/proc/self/task/{tid}/comm").read_text().strip())

    for name in ("outbox-spooler", "a-much-longer-thread-name"):
        t = threading.Thread(target=run_guarded, args=("test", loop),
                             kwargs={"wait": lambda s: True}, name=name)
        t.start()
        t.join(10)
    assert seen == ["outbox-spooler", "a-much-longer-t"]
