"""No thread dies of an exception from its work, of any type.

"Any type" is every `Exception` subclass: the usual ones, RecursionError, MemoryError
and a class of our own. (SystemExit, KeyboardInterrupt and GeneratorExit are not
Exceptions: they mean "stop", and still end a thread.)

Each thread's unit of work is made to raise once (or a few times), with real parts
around it: a reader on a real pty with the real `lines` decoder, I2C readers on the
simulated bus, the outbox on a real SQLite spool, the publisher against a real
Mosquitto, the inference supervisor with its worker process, the HTTP listener on a
real socket. Afterwards the thread is alive, later work happens, and the error is
counted (health) and logged with the device or thread it happened in.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import spec_for
from gateway.config import parse_config
from gateway.config.model import I2CDevice
from gateway.health import Health
from gateway.outbox import Outbox
from gateway.outbox.spool import SqliteSpool
from gateway.readers.base import Reader, ReaderContext
from gateway.readers.factory import make_reader
from gateway.readers.i2c import I2CBuses, I2CReader
from gateway.readers.serial import StreamReader
from gateway.reading import Reading
from gateway.web.server import HttpListener
from hardware_sim.world import SimWorld
from tests.serial_support import Collector, make_ctx, wait_until
from tests.support import REPO, Mosquitto, Subscriber, running_gateway, sim_header

WAIT = 60.0


class OurOwnError(Exception):
    """Not one the code names anywhere."""


ERRORS: list[type[Exception]] = [RuntimeError, RecursionError, MemoryError, KeyError,
                                 ZeroDivisionError, AttributeError, TypeError, OurOwnError]
#: For the heavier rigs (a daemon, a worker process): several types in one run.
SOME = [RecursionError, KeyError, OurOwnError]


def raising(original: Callable[..., Any], error: type[Exception], times: int = 1,
            when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Any]:
    """`original`, except that its first `times` calls for which `when` holds raise `error`."""
    left = [times]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0 and when(*args, **kwargs):
            left[0] -= 1
            raise error(f"injected {error.__name__}")
        return original(*args, **kwargs)

    wrapper.left = left  # type: ignore[attr-defined]
    return wrapper


def logged(caplog: pytest.LogCaptureFixture, *words: str) -> bool:
    return any(all(w in r.getMessage() or w in (r.exc_text or "") or
                   (r.exc_info is not None and w in repr(r.exc_info[1])) for w in words)
               for r in caplog.records)


# ------------------------------------------------------------------ serial: a real pty


class Pty:
    """A pseudo-terminal: the reader opens `path`, the test writes to the master side."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self._slave = slave  # held open so the pty stays up between the reader's opens

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty()
    yield p
    p.close()


def lines_reader(pty: Pty, **extra: Any) -> tuple[StreamReader, Collector]:
    spec = spec_for("lines")
    cfg = spec.config.model_validate({"name": "mcu", "driver": "lines", "port": "/dev/ttyACM0",
                                      "format": "json", "timeout": 0.2, **extra})
    ctx, col = make_ctx("mcu", "lines", {"mcu": pty})
    reader = make_reader(cfg, ctx)
    assert isinstance(reader, StreamReader)  # the catalog's lines entry is a line stream
    return reader, col


def start(reader: Reader, pty: Pty) -> None:
    """Start, wait for the port to be open (opening a tty flushes what waits in it), and end
    the partial line the reader skips after an open."""
    reader.start()
    assert wait_until(lambda: reader.ctx.health.counters.get("opens", 0) >= 1, WAIT)
    pty.write(b"\n")


def temps(col: Collector) -> list[Any]:
    return [v.get("t") for v in col.values()]


def stop(reader: Reader) -> None:
    reader.stop()
    assert reader.join(10), "reader did not stop"
    assert reader.error is None


def test_a_line_of_1000_brackets_is_a_bad_line_and_the_next_one_is_published(pty: Pty) -> None:
    reader, col = lines_reader(pty)
    start(reader, pty)
    try:
        pty.write(b'{"t": 1}\n')
        assert col.wait_for(lambda rs: len(rs) >= 1, WAIT)
        pty.write(b"[" * 1000 + b"\n" + b'{"t": 2}\n')
        assert col.wait_for(lambda rs: len(rs) >= 2, WAIT), reader.ctx.health.counters
        assert temps(col) == [1, 2]
        assert reader.alive
        counters = reader.ctx.health.counters
        assert counters.get("bad_lines") == 1 and "unexpected_errors" not in counters
    finally:
        stop(reader)


def test_deeper_hostile_json_within_a_long_line_limit(pty: Pty) -> None:
    reader, col = lines_reader(pty, max_line=65536)
    start(reader, pty)
    try:
        pty.write(b'{"a": ' * 10000 + b"\n" + b"[{" * 20000 + b"\n" + b'{"t": 3}\n')
        assert col.wait_for(lambda rs: len(rs) >= 1, WAIT), reader.ctx.health.counters
        assert temps(col) == [3] and reader.alive
        assert reader.ctx.health.counters.get("bad_lines") == 2
    finally:
        stop(reader)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_a_decoder_that_raises_costs_one_line(pty: Pty, error: type[Exception],
                                              caplog: pytest.LogCaptureFixture) -> None:
    reader, col = lines_reader(pty)
    decode = reader.decode
    reader.decode = raising(decode, error, when=lambda line: b"boom" in line)
    start(reader, pty)
    try:
        pty.write(b'{"t": 1}\n{"t": "boom"}\n{"t": 2}\n')
        assert col.wait_for(lambda rs: len(rs) >= 2, WAIT), reader.ctx.health.counters
        assert temps(col) == [1, 2] and reader.alive
        h = reader.ctx.health
        assert h.counters["decode_errors"] == 1 and h.counters["unexpected_errors"] == 1
        assert h.total_errors == 1 and error.__name__ in (h.last_error or "")
        assert logged(caplog, "mcu", "decoder raised", error.__name__)
    finally:
        stop(reader)


@pytest.mark.parametrize("error", SOME, ids=lambda e: e.__name__)
def test_a_stream_reader_whose_loop_raises_starts_over(pty: Pty, error: type[Exception],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    reader, col = lines_reader(pty)
    # Something outside the decoder (here: the silence check after a read) raises, twice.
    reader._check_silence = raising(reader._check_silence, error, times=2)  # type: ignore[method-assign]
    start(reader, pty)
    try:
        for t in range(1, 4):
            # Written until seen: the reader reopens the port after each error, and
            # opening a tty flushes what was waiting in it.
            def seen(t: int = t) -> bool:
                pty.write(f'{{"t": {t}}}\n'.encode())
                return t in temps(col)

            assert wait_until(seen, WAIT, step=0.2), (t, temps(col))
        assert reader.alive
        assert reader.ctx.health.counters["unexpected_errors"] == 2
        assert logged(caplog, "reader mcu", error.__name__, "the thread goes on")
    finally:
        stop(reader)


# ------------------------------------------------------------------ I2C: the bus thread


class I2CRig:
    def __init__(self) -> None:
        self.world = SimWorld()
        self.buses = I2CBuses(self.world.open_bus)
        self.health = Health()
        self.readings: list[Reading] = []
        self.cond = threading.Condition()

    def add(self, name: str, address: int) -> I2CReader:
        self.world.add_chip(name, "tmp102", 1, address, None)
        spec = spec_for("tmp102")
        cfg = spec.config.model_validate({"name": name, "driver": "tmp102", "address": address,
                                          "interval": 0.02})
        assert isinstance(cfg, I2CDevice)
        ctx = ReaderContext(put=self._put, health=self.health.device(name, "tmp102"),
                            simulate=True)
        return I2CReader(cfg, spec, ctx, self.buses)

    def _put(self, reading: Reading) -> bool:
        with self.cond:
            self.readings.append(reading)
            self.cond.notify_all()
        return True

    def count(self, name: str) -> int:
        with self.cond:
            return sum(1 for r in self.readings if r.device == name)

    def wait_more(self, name: str, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count(name) >= n, WAIT)


@pytest.fixture
def i2c() -> Iterator[I2CRig]:
    rig = I2CRig()
    yield rig
    rig.buses.close()


@pytest.mark.parametrize("where", ["driver", "poll_once"])
@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_an_i2c_poll_that_raises_is_counted_and_the_bus_thread_goes_on(
        i2c: I2CRig, error: type[Exception], where: str, caplog: pytest.LogCaptureFixture) -> None:
    bad, good = i2c.add("bad", 0x48), i2c.add("good", 0x49)
    if where == "driver":  # the driver's read, inside the reader's poll
        bad.poll = raising(bad.poll, error, times=3)  # type: ignore[method-assign]
    else:  # the whole poll, as the bus thread calls it
        bad.poll_once = raising(bad.poll_once, error, times=3)  # type: ignore[method-assign]
    bad.start()
    good.start()
    try:
        assert i2c.wait_more("bad", 3) and i2c.wait_more("good", 3)
        assert bad.alive and good.alive and bad.poller.alive
        h = i2c.health.devices["bad"]
        assert h.total_errors == 3 and h.counters["unexpected_errors"] == 3
        assert i2c.health.devices["good"].total_errors == 0
        assert logged(caplog, "bad", error.__name__)
    finally:
        for r in (bad, good):
            r.stop()
            assert r.join(10)


# ------------------------------------------------------------------ the outbox spooler


def reading(device: str, t: float) -> Reading:
    return Reading(device, {"t": t}, time.time())


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(SqliteSpool(str(tmp_path / "spool.db")), "gw/test")
    errors: list[str] = []
    box.on_thread_error = errors.append
    box.start()
    yield box
    box.stop()


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_a_round_of_the_spooler_that_raises_is_counted_and_it_goes_on(
        outbox: Outbox, error: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    outbox._commit = raising(outbox._commit, error)  # type: ignore[method-assign]
    outbox.put(reading("a", 1.0))
    assert wait_until(lambda: outbox.stats.thread_errors == 1, WAIT)
    for t in (2.0, 3.0):
        assert outbox.put(reading("a", t))
    assert outbox.flush(WAIT)
    assert outbox.alive
    payloads = [json.loads(m.payload) for m in outbox.take(10)]
    assert [p["t"] for p in payloads][-2:] == [2.0, 3.0]
    assert logged(caplog, "outbox spooler", error.__name__)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_a_round_of_the_spool_syncer_that_raises_is_counted_and_it_goes_on(
        outbox: Outbox, error: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    spool = outbox.spool
    assert isinstance(spool, SqliteSpool) and spool._syncer is not None
    syncer = spool._syncer
    syncer._sync = raising(syncer._sync, error)  # type: ignore[method-assign]
    outbox.put(reading("a", 1.0))
    assert outbox.flush(WAIT)
    assert wait_until(lambda: outbox.stats.thread_errors == 1, WAIT)
    assert logged(caplog, "spool syncer", error.__name__)
    synced = syncer.syncs
    outbox.put(reading("a", 2.0))  # the thread went on: this commit is synced
    assert outbox.flush(WAIT)
    assert spool.wait_synced(WAIT) and syncer.alive()
    assert wait_until(lambda: syncer.syncs > synced, WAIT)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_a_spool_write_that_raises_is_retried(outbox: Outbox, error: type[Exception]) -> None:
    # The outbox inserts readings in a transaction of their own (acks: another one).
    outbox.spool.insert = raising(outbox.spool.insert, error, times=2)  # type: ignore[method-assign]
    for t in (1.0, 2.0):
        outbox.put(reading("a", t))
    assert outbox.flush(WAIT)
    assert outbox.alive and outbox.stats.spool_errors == 2
    assert [json.loads(m.payload)["t"] for m in outbox.take(10)] == [1.0, 2.0]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_a_reading_that_cannot_be_encoded_is_refused_alone(
        outbox: Outbox, error: type[Exception], monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.outbox.outbox as outbox_module
    from gateway.reading import encode_payload

    monkeypatch.setattr(outbox_module, "encode_payload", raising(
        encode_payload, error, when=lambda seq, ts, values, *rest: values["t"] == 2.0))
    for t in (1.0, 2.0, 3.0):
        outbox.put(reading("a", t))
    assert outbox.flush(WAIT)
    assert outbox.alive and outbox.stats.unencodable == 1
    assert [json.loads(m.payload)["t"] for m in outbox.take(10)] == [1.0, 3.0]


# ------------------------------------------------------------------ publisher, in a daemon


def daemon_config(tmp_path: Path, port: int, extra: str = "") -> str:
    return (sim_header("resilient", port, tmp_path)
            + "devices:\n  - name: probe\n    driver: tmp102\n    address: 0x48\n"
              "    interval: 50ms\n" + extra)


def test_the_publisher_survives_its_work_raising(tmp_path: Path, broker: Mosquitto,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_config(daemon_config(tmp_path, broker.port), str(tmp_path / "gw.yaml"))
    sub = Subscriber(broker.port, "gateway/resilient/probe").start()
    try:
        with running_gateway(cfg) as gw:
            assert sub.wait_for(lambda s: s.count("gateway/resilient/probe") >= 3, WAIT)
            take = gw.outbox.take
            for i, error in enumerate(SOME, start=1):
                gw.outbox.take = raising(take, error)  # type: ignore[method-assign]
                def counted(i: int = i) -> bool:
                    return gw.health.thread_errors.get("mqtt-publisher") == i

                assert wait_until(counted, WAIT)
                n = sub.count("gateway/resilient/probe")
                assert sub.wait_for(lambda s, n=n: s.count("gateway/resilient/probe") >= n + 3,
                                    WAIT)
                assert gw.publisher._thread is not None and gw.publisher._thread.is_alive()
                assert logged(caplog, "mqtt publisher", error.__name__)
            assert gw.health.snapshot()["thread_errors"] == {"mqtt-publisher": len(SOME)}
    finally:
        sub.stop()
    seqs = [m.json()["seq"] for m in sub.on("gateway/resilient/probe")]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing twice


# ------------------------------------------------------------------ inference supervisor


def test_the_inference_supervisor_survives_its_work_raising(
        tmp_path: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    from gateway.inference.supervisor import InferenceSupervisor

    inference = (f"inference:\n  enabled: true\n  name: cam\n"
                 f"  model: {REPO / 'models' / 'shapes_int8.tflite'}\n"
                 f"  labels: {REPO / 'models' / 'labels.txt'}\n"
                 "  camera: sim\n  fps: 5\n  publish_interval: 0s\n")
    cfg = parse_config(daemon_config(tmp_path, broker.port, inference), str(tmp_path / "gw.yaml"))
    sub = Subscriber(broker.port, "gateway/resilient/cam").start()
    try:
        with running_gateway(cfg) as gw:
            sup = next(c for c in gw.components if isinstance(c, InferenceSupervisor))
            assert sub.wait_for(lambda s: s.count("gateway/resilient/cam") >= 2, WAIT)
            check = sup._check
            for error in SOME:
                errors = gw.health.devices["cam"].total_errors
                sup._check = raising(check, error)  # type: ignore[method-assign]
                def counted(e: int = errors) -> bool:
                    return gw.health.devices["cam"].total_errors > e

                assert wait_until(counted, WAIT)
                n = sub.count("gateway/resilient/cam")
                assert sub.wait_for(lambda s, n=n: s.count("gateway/resilient/cam") >= n + 2, WAIT)
                assert sup._thread is not None and sup._thread.is_alive()
                assert logged(caplog, "inference cam supervisor", error.__name__)
    finally:
        sub.stop()


# ------------------------------------------------------------------ the HTTP listener


def get(port: int) -> bytes:
    """The response, or b"" when the connection is closed (or reset) unanswered."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            while chunk := s.recv(4096):
                chunks.append(chunk)
        except ConnectionResetError:
            return b""
    return b"".join(chunks)


@pytest.mark.parametrize("error", SOME, ids=lambda e: e.__name__)
def test_the_http_listener_survives_a_connection_it_cannot_serve(
        error: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    listener = HttpListener("127.0.0.1", 0, {"/x": lambda: (200, "text/plain", b"fine")})
    listener.start()
    try:
        listener._dispatch = raising(listener._dispatch, error)  # type: ignore[method-assign]
        assert get(listener.port) == b""  # that one is closed unserved
        assert get(listener.port).startswith(b"HTTP/1.1 200") and listener.alive
        assert listener.errors == 1 and logged(caplog, "serving", error.__name__)
    finally:
        listener.stop()


def test_stop_is_still_a_stop() -> None:
    """What is not an Exception ends the guarded loop: a stop must stay a stop."""
    from gateway.threadguard import run_guarded

    calls = []

    def loop() -> None:
        calls.append(1)
        raise SystemExit(0)

    with pytest.raises(SystemExit):
        run_guarded("t", loop, wait=lambda s: False)
    assert calls == [1]


def test_a_loop_that_always_raises_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    from gateway.threadguard import run_guarded

    caplog.set_level(logging.ERROR)
    pauses: list[float] = []

    def wait(seconds: float) -> bool:
        pauses.append(seconds)
        return len(pauses) >= 8

    def loop() -> None:
        raise OurOwnError("always")

    run_guarded("t", loop, wait=wait, first_pause=0.1, max_pause=5.0)
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert len([r for r in caplog.records if "OurOwnError" in r.getMessage()]) == 8
