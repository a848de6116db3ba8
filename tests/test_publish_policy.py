"""Report on change: deadband (absolute and relative), max_silence, and seq over published only."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.config.model import PublishPolicy
from gateway.health import DeviceHealth
from gateway.outbox import Outbox
from gateway.outbox.spool import MemorySpool
from gateway.publish_policy import ChangeFilter, parse_deadband
from gateway.readers.base import ReaderContext


def run(policy: PublishPolicy, series: list[tuple[float, dict[str, Any]]]) -> list[int]:
    """Indexes of the readings that were published."""
    f = ChangeFilter(policy)
    return [i for i, (ts, values) in enumerate(series) if f(values, ts) is not None]


def test_absolute_deadband_compares_with_last_published_value() -> None:
    p = PublishPolicy(on_change=True, deadband=0.5)
    temps = [20.0, 20.2, 20.4, 20.5, 20.6, 19.9, 20.1, 21.0]
    # 20.0 first; 20.2/20.4/20.5 within 0.5 of 20.0 (0.5 is not *more than* 0.5);
    # 20.6 > 0.5 away; 19.9 is 0.7 below 20.6; 20.1 is 0.2 from 19.9; 21.0 is 1.1 away.
    got = run(p, [(float(i), {"temperature_c": t}) for i, t in enumerate(temps)])
    assert got == [0, 4, 5, 7]


def test_slow_drift_is_reported_once_it_adds_up() -> None:
    # Steps exact in binary floating point, so "more than the deadband" is unambiguous.
    p = PublishPolicy(on_change=True, deadband=0.25)
    temps = [10.0 + 0.125 * i for i in range(10)]  # 10.0, 10.125, ... 11.125
    got = run(p, [(float(i), {"t_c": t}) for i, t in enumerate(temps)])
    # 10.0 -> must exceed 10.25: 10.375 (i=3); then > 10.625: 10.75 (i=6); then 11.125 (i=9).
    assert got == [0, 3, 6, 9]


def test_relative_deadband_in_percent() -> None:
    p = PublishPolicy(on_change=True, deadband="1%")
    values = [1000.0, 1009.0, 1010.0, 1010.5, 1020.3, 1020.0]
    # 1% of 1000 is 10: 1009 and 1010 stay; 1010.5 goes. 1% of 1010.5 = 10.105:
    # 1020.3 is 9.8 away (stays); 1020.0 stays too.
    got = run(p, [(float(i), {"pressure_hpa": v}) for i, v in enumerate(values)])
    assert got == [0, 3]
    assert parse_deadband("2.5%") == (0.025, True)
    assert parse_deadband(0.2) == (0.2, False)


def test_any_quantity_changing_publishes_all_values() -> None:
    f = ChangeFilter(PublishPolicy(on_change=True, deadband=1.0))
    assert f({"temperature_c": 20.0, "humidity_pct": 40.0}, 0.0) is not None
    assert f({"temperature_c": 20.5, "humidity_pct": 40.5}, 1.0) is None
    out = f({"temperature_c": 20.5, "humidity_pct": 42.0}, 2.0)
    assert out == {"temperature_c": 20.5, "humidity_pct": 42.0}


def test_without_deadband_every_change_publishes_and_repeats_do_not() -> None:
    p = PublishPolicy(on_change=True)
    series = [1, 1, 1, 2, 2, 1, 1]
    got = run(p, [(float(i), {"satellites": v}) for i, v in enumerate(series)])
    assert got == [0, 3, 5]


def test_text_values_and_key_changes() -> None:
    p = PublishPolicy(on_change=True, deadband=5.0)
    series: list[dict[str, Any]] = [
        {"label": "cat", "score": 0.9},
        {"label": "cat", "score": 0.91},
        {"label": "dog", "score": 0.91},
        {"label": "dog"},
    ]
    assert run(p, [(float(i), v) for i, v in enumerate(series)]) == [0, 2, 3]


def test_max_silence_forces_a_heartbeat_reading() -> None:
    p = PublishPolicy.model_validate({"on_change": True, "deadband": 1.0, "max_silence": "10s"})
    # Unchanged readings every 3 s: published at 0, then at the first reading
    # at least 10 s after the last published one: 12, 24, ...
    got = run(p, [(3.0 * i, {"temperature_c": 20.0}) for i in range(10)])
    assert got == [0, 4, 8]


def test_max_silence_counts_from_the_last_published_reading() -> None:
    p = PublishPolicy(on_change=True, deadband=1.0, max_silence=10)
    ts_values = [(0.0, 20.0), (5.0, 25.0), (10.0, 25.0), (14.0, 25.0), (15.0, 25.0)]
    # 25.0 at t=5 is a change; silence then counts from 5, so 15 is the next forced one.
    got = run(p, [(t, {"temperature_c": v}) for t, v in ts_values])
    assert got == [0, 1, 4]


def test_config_accepts_publish_policy_and_refuses_bad_deadbands() -> None:
    base = "gateway: {id: g}\ndevices:\n  - {name: a, driver: tmp102, address: 0x48, publish: %s}\n"
    cfg = parse_config(base % "{on_change: true, deadband: '2%', max_silence: 5m}")
    pol = cfg.devices[0].publish
    assert pol is not None and pol.max_silence == 300.0 and pol.deadband == "2%"
    with pytest.raises(Exception, match="relative deadband ends with"):
        parse_config(base % "{on_change: true, deadband: '2 percent'}")
    with pytest.raises(Exception, match="must not be negative"):
        parse_config(base % "{on_change: true, deadband: -1}")


def test_seq_counts_only_published_readings() -> None:
    """Through the real ReaderContext and Outbox: suppressed readings leave no gap in seq."""
    outbox = Outbox(MemorySpool(max_messages=1000, max_bytes=10**7, when_full="drop_oldest"),
                    "gw/t", commit_interval=0.001)
    outbox.start()
    try:
        ctx = ReaderContext(
            put=outbox.put, health=DeviceHealth("probe", "tmp102"),
            publish_filter=ChangeFilter(PublishPolicy(on_change=True, deadband=0.5)),
        )
        temps = [20.0, 20.1, 20.2, 21.0, 21.1, 19.0, 19.0, 19.0]
        t0 = time.time()
        for i, t in enumerate(temps):
            assert ctx.emit({"temperature_c": t}, t0 + i)
        assert outbox.flush(timeout=30)
        msgs = outbox.take(100)
    finally:
        outbox.stop()
    bodies = [json.loads(m.payload) for m in msgs]
    assert [b["temperature_c"] for b in bodies] == [20.0, 21.0, 19.0]
    assert [b["seq"] for b in bodies] == [1, 2, 3]
    assert ctx.health.readings == len(temps)  # every poll counted as a reading taken


def test_per_quantity_deadbands_override_the_device_deadband() -> None:
    p = PublishPolicy.model_validate({
        "on_change": True, "deadband": 0.5,
        "deadbands": {"humidity_pct": 2, "pressure_hpa": "0.1%"},
    })
    series = [
        {"temperature_c": 20.0, "humidity_pct": 40.0, "pressure_hpa": 1000.0},
        {"temperature_c": 20.25, "humidity_pct": 41.5, "pressure_hpa": 1000.75},  # all within
        {"temperature_c": 20.25, "humidity_pct": 42.5, "pressure_hpa": 1000.75},  # humidity > 2
        {"temperature_c": 20.25, "humidity_pct": 42.5, "pressure_hpa": 1001.875},  # > 0.1% of 1000.75
        {"temperature_c": 20.875, "humidity_pct": 42.5, "pressure_hpa": 1001.875},  # temp > 0.5
    ]
    assert run(p, [(float(i), v) for i, v in enumerate(series)]) == [0, 2, 3, 4]
    with pytest.raises(Exception, match="humidity_pct: must not be negative"):
        parse_config("gateway: {id: g}\ndevices:\n  - {name: a, driver: tmp102, address: 0x48, "
                     "publish: {on_change: true, deadbands: {humidity_pct: -1}}}\n")
