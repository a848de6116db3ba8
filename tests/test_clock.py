"""Timestamps before NTP: held, corrected from the monotonic clock, or labelled.

Unit tests drive gateway.clock.ClockWatch with an injected sync probe, monotonic and
wall clock (a Pi whose fake-hwclock time is a day behind, then NTP steps it). The
end-to-end test runs the daemon against a real Mosquitto with the probe replaced.
"""

from __future__ import annotations

import ctypes
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import clock as clockmod
from gateway.clock import RECHECK, ClockWatch, probe_for
from gateway.config import load_config
from gateway.reading import encode_payload, format_ts
from tests.support import Mosquitto, Subscriber, running_gateway, wait_until, write_config

DAY = 86400.0
BOOT = "0123456789ab"


class FakeTime:
    """A Pi after boot: monotonic from 0, the wall clock `behind` seconds behind the truth
    until `sync()` steps it."""

    def __init__(self, behind: float = DAY) -> None:
        self.mono = 5.0
        self.true_wall_at_boot = 1_790_000_000.0
        self.behind = behind
        self.synced = False
        self.probes = 0

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.true_wall_at_boot + self.mono - (0.0 if self.synced else self.behind)

    def probe(self) -> bool:
        self.probes += 1
        return self.synced

    def watch(self, hold: float = 600.0, boot: str = BOOT) -> ClockWatch:
        return ClockWatch("auto", hold, probe=self.probe, monotonic=self.monotonic,
                          wall=self.wall, boot=boot)


def reading_at(t: FakeTime) -> tuple[float, float]:
    return t.wall(), t.mono


def test_unsynced_readings_are_held_then_corrected(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    watch = t.watch()
    assert watch.holding()
    ts, mono = reading_at(t)
    stamped, mark = watch.stamp(ts, mono)
    assert stamped == ts and mark == f"unsynced/{BOOT}/{round(mono * 1000)}"
    payload = encode_payload(7, stamped, {"temperature_c": 21.5}, mark)
    assert json.loads(payload)["clock"] == mark

    t.mono += 90.0  # NTP answers 90 s later and steps the clock forward by a day
    t.synced = True
    assert not watch.holding()
    out = json.loads(watch.finish(payload))
    # The truth: the reading was taken at true_wall_at_boot + 5 s.
    assert out == {"seq": 7, "ts": format_ts(t.true_wall_at_boot + 5.0), "temperature_c": 21.5}
    assert list(out) == ["seq", "ts", "temperature_c"]


def test_taken_before_sync_encoded_after_is_corrected_without_a_mark() -> None:
    t = FakeTime()
    watch = t.watch()
    assert not watch.synchronized()
    ts, mono = reading_at(t)
    t.mono += RECHECK
    t.synced = True
    stamped, mark = watch.stamp(ts, mono)
    assert mark is None
    assert stamped == pytest.approx(t.true_wall_at_boot + 5.0)
    # Taken after the sync was seen: its own ts stands.
    ts2, mono2 = reading_at(t)
    assert watch.stamp(ts2, mono2) == (ts2, None)


def test_past_the_hold_they_go_out_labelled() -> None:
    t = FakeTime()
    watch = t.watch(hold=600.0)
    ts, mark = _stamp(watch, t)
    payload = encode_payload(1, ts, {"v": 1}, mark)
    t.mono = 601.0
    assert not watch.holding()  # still unsynchronised, but the hold is over
    out = json.loads(watch.finish(payload))
    assert out["clock"] == "unsynced" and out["ts"] == format_ts(t.true_wall_at_boot + 5.0 - DAY)
    assert list(out) == ["seq", "ts", "clock", "v"]


def _stamp(watch: ClockWatch, t: FakeTime) -> tuple[float, str | None]:
    return watch.stamp(*reading_at(t))


def test_a_mark_from_another_boot_is_labelled_not_corrected() -> None:
    t = FakeTime()
    before = t.watch(boot="aaaaaaaaaaaa")
    ts, mark = _stamp(before, t)
    payload = encode_payload(3, ts, {"v": 2}, mark)
    t.synced = True
    now = t.watch(boot="bbbbbbbbbbbb")  # rebooted: its monotonic clock started again
    out = json.loads(now.finish(payload))
    assert out["clock"] == "unsynced"
    assert out["ts"] == format_ts(t.true_wall_at_boot + 5.0 - DAY)


def test_synced_clock_changes_nothing() -> None:
    t = FakeTime()
    t.synced = True
    watch = t.watch()
    ts, mono = reading_at(t)
    assert watch.stamp(ts, mono) == (ts, None)
    plain = encode_payload(1, ts, {"v": 1.5})
    assert watch.finish(plain) is plain
    assert not watch.holding()


def test_trusted_from_the_start_keeps_given_timestamps() -> None:
    """A reader may stamp a reading itself (a serial line's arrival, a camera frame) before
    the clock is first looked at: a clock that is synchronised at that first look was all
    along, so such a `ts` is kept, not recomputed from the monotonic clock."""
    t = FakeTime()
    t.synced = True
    earlier = t.mono - 0.25
    watch = t.watch()
    assert watch.stamp(1_700_000_000.0, earlier) == (1_700_000_000.0, None)
    assert watch.corrected == 0


def test_slow_path_payload_carries_the_mark_too() -> None:
    """Values the fast encoder leaves to the json module (strings, odd keys, NaN)."""
    t = FakeTime()
    watch = t.watch()
    ts, mark = _stamp(watch, t)
    payload = encode_payload(4, ts, {"label": "cat", "x": float("nan")}, mark)
    assert list(json.loads(payload)) == ["seq", "ts", "clock", "label", "x"]
    t.mono += 10
    t.synced = True
    out = json.loads(watch.finish(payload))
    assert out == {"seq": 4, "ts": format_ts(t.true_wall_at_boot + 5.0), "label": "cat",
                   "x": None}


def test_probe_is_rate_limited_and_sync_is_sticky() -> None:
    t = FakeTime()
    watch = t.watch()
    for _ in range(100):
        watch.holding()
    assert t.probes == 1  # not once per reading
    t.mono += RECHECK
    t.synced = True
    assert watch.synchronized() and t.probes == 2
    t.synced = False  # NTP lost later: the clock was set, it only drifts now
    t.mono += 10 * RECHECK
    assert watch.synchronized() and t.probes == 2


def test_auto_source(tmp_path: Path) -> None:
    flag = tmp_path / "timesync" / "synchronized"
    service = tmp_path / "timesync"
    for kernel, flag_exists, service_runs, expected in [
        (True, False, True, True),      # the kernel says synchronised
        (False, True, True, True),      # timesyncd's flag
        (None, True, True, True),       # no adjtimex, but the flag
        (False, False, True, False),    # timesyncd runs and has not synchronised yet
        (False, False, False, True),    # no time service at all: nothing to wait for
    ]:
        service.mkdir(exist_ok=True) if service_runs else None
        if flag_exists:
            flag.touch()
        probe = probe_for("auto", kernel=lambda k=kernel: k, flag=flag,  # type: ignore[misc]
                          services=(service,) if service_runs else (tmp_path / "none",))
        assert probe() is expected, (kernel, flag_exists, service_runs)
        flag.unlink(missing_ok=True)
    assert probe_for("off")() is True
    assert probe_for("timesyncd", flag=flag)() is False
    assert probe_for("kernel", kernel=lambda: False)() is False


def test_adjtimex_struct_matches_the_kernel() -> None:
    """struct timex is 208 bytes on LP64 (include/uapi/linux/timex.h); a wrong layout would
    make the kernel write past our buffer."""
    if ctypes.sizeof(ctypes.c_long) == 8:
        assert ctypes.sizeof(clockmod._Timex) == 208
    else:
        assert ctypes.sizeof(clockmod._Timex) == 128
    assert clockmod.kernel_synchronized() in (True, False)


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture
def fake_sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    state = {"synced": False}
    real = clockmod.probe_for
    monkeypatch.setattr(clockmod, "probe_for",
                        lambda source, **kw: (lambda: state["synced"]) if source == "kernel"
                        else real(source, **kw))
    yield state
    clockmod.set_default_clock(None)


def test_daemon_holds_readings_until_sync_then_delivers_them_corrected(
        tmp_path: Path, broker: Mosquitto, fake_sync: dict[str, bool]) -> None:
    cfg = load_config(write_config(tmp_path / "gw.yaml", f"""
gateway:
  id: clock-e2e
  simulate: true
  clock: {{sync: kernel, hold: 100d}}
mqtt: {{host: 127.0.0.1, port: {broker.port}}}
buffer: {{path: {tmp_path}/spool.db}}
devices:
  - {{name: t, driver: tmp102, address: 0x48, interval: 50ms}}
"""))
    sub = Subscriber(broker.port, "gateway/clock-e2e/t").start()
    try:
        with running_gateway(cfg) as gw:
            assert wait_until(lambda: gw.outbox.spool.count() >= 10, timeout=30)
            taken_before = time.time()
            assert sub.count("gateway/clock-e2e/t") == 0  # held back, in the spool
            # NTP answers: the real time is a day ahead of what the Pi thought.
            gw.clock._wall = lambda: time.time() + DAY
            fake_sync["synced"] = True
            assert sub.wait_for(lambda s: s.count("gateway/clock-e2e/t") >= 20, timeout=30)
        msgs = [m.json() for m in sub.on("gateway/clock-e2e/t")]
    finally:
        sub.stop()
    seqs = [m["seq"] for m in msgs]
    assert seqs == list(range(1, len(seqs) + 1))  # all of them, in order
    assert not any("clock" in m for m in msgs)
    from gateway.reading import parse_ts

    first = parse_ts(msgs[0]["ts"])
    assert first is not None
    # The held ones were taken before `taken_before` on the Pi's (wrong) clock and are now
    # stamped a day later, from the monotonic clock.
    assert taken_before + DAY - 60 < first < taken_before + DAY + 1
