"""Signals reach the daemon whichever thread the kernel hands them to.

Python runs signal handlers in the main thread only. A process-directed signal goes
to any thread that can take it: `kill(TID)` of another thread makes the kernel pick
that thread first (complete_signal() in kernel/signal.c), which is what happens at
random when the main thread has a signal pending. A main thread asleep without a
timeout would then never act on SIGTERM (a soak's final SIGTERM was ignored so).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support import GatewayProcess, free_port, wait_until, write_config


def other_threads(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]


def start_ready(tmp_path: Path) -> tuple[GatewayProcess, int]:
    """A daemon with one simulated sensor (no broker: none is needed here), started and
    ready; and its pid."""
    cfg = write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: sg, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {free_port()}}}
buffer: {{path: {tmp_path}/spool.db}}
devices:
  - {{name: t0, driver: tmp102, address: 0x48, interval: 200ms}}
""")
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert gw.proc is not None
        assert wait_until(lambda: "ready:" in gw.output(), 30), gw.output()
    except BaseException:
        gw.kill()
        raise
    return gw, gw.proc.pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_taken_by_another_thread_is_acted_on(tmp_path: Path, sig: int) -> None:
    gw, pid = start_ready(tmp_path)
    try:
        threads = other_threads(pid)
        assert threads, "the daemon has reader, spooler and publisher threads"
        os.kill(threads[0], sig)  # process-directed, but this thread takes it
        if sig == signal.SIGHUP:
            assert wait_until(lambda: "SIGHUP: reloading" in gw.output(), 15), gw.output()
            os.kill(other_threads(pid)[-1], signal.SIGTERM)
        assert gw.wait(20) == 0, gw.output()
        assert "received SIGTERM" in gw.output()
    finally:
        gw.kill()


def test_the_main_thread_sleeps_until_a_signal_or_request(tmp_path: Path) -> None:
    """With signals routed to its wake-up pipe, the main thread has no reason to wake
    on its own (it used to look for signals once a second): once the start has settled
    (the heap trim, gateway.daemon.SETTLE), it sleeps through whole seconds."""
    import time

    from gateway.daemon import SETTLE

    gw, pid = start_ready(tmp_path)
    try:
        time.sleep(SETTLE + 1.0)  # past the trim: what follows is the idle main thread

        def sleeps() -> int:
            status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
            return int(status.split("voluntary_ctxt_switches:")[1].split()[0])

        before = sleeps()
        time.sleep(3.0)
        assert sleeps() - before <= 1  # it polled once a second: 3 here
        os.kill(other_threads(pid)[0], signal.SIGTERM)  # and a signal still wakes it
        assert gw.wait(20) == 0, gw.output()
        assert "received SIGTERM" in gw.output()
    finally:
        gw.kill()
