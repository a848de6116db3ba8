"""Test support: a real Mosquitto on a free loopback port, subscribers, gateway processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

if TYPE_CHECKING:
    from gateway.config.model import Config
    from gateway.daemon import Gateway
    from gateway.outbox.spool import NewRow

REPO = Path(__file__).resolve().parent.parent


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed (make test installs it as root)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'}")


class Mosquitto:
    """A real broker with its own config file, started and stopped by PID."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "",
                 persistent: bool = False) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # Started as root, mosquitto drops to its own user: keep files reachable.
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)

    def write_conf(self) -> None:
        if self.persistent:
            data = self.workdir / "data"
            data.mkdir(exist_ok=True)
            os.chmod(data, 0o777)  # mosquitto drops to its own user when started as root
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # As root, mosquitto would drop to its own user, which cannot reach pytest's
            # 0700 temp dirs; a test broker has no reason to.
            + ("user root\n" if os.geteuid() == 0 else "")
            + (f"persistence true\npersistence_location {self.workdir}/data/\n"
               if self.persistent else "persistence false\n")
            +
            "max_queued_messages 1000000\n"
            "max_inflight_messages 0\n"
            "log_type error\nlog_type warning\n"
            + self.extra_conf
        )
        os.chmod(self.conf, 0o644)

    def start(self) -> None:
        self.write_conf()
        logf = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)], stdout=logf, stderr=subprocess.STDOUT
        )
        logf.close()
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A paho subscriber collecting everything under a topic filter."""

    port: int
    topic: str = "#"
    qos: int = 1
    messages: list[Received] = field(default_factory=list)
    client_id: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"test-sub-{os.getpid()}-{id(self)}",
            clean_session=not bool(self.client_id),
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=self.qos)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), msg.retain, time.time()))
            self._cond.notify_all()

    def start(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> bool:
        """Wait until `predicate(self)` holds. It is evaluated without the lock (at most
        every 10 ms, and at least every 50 ms): an expensive predicate (parsing every
        payload) held under the lock let one message in per evaluation, and a subscriber
        with ~25,000 messages on their way fell minutes behind."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(min(remaining, 0.05))
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        return True

    def count(self, topic: str) -> int:
        return len(self.on(topic))


def retained(port: int, topic: str, timeout: float = 5.0) -> bytes | None:
    """The retained message on `topic` (None if there is none)."""
    sub = Subscriber(port, topic).start()
    try:
        sub.wait_for(lambda s: s.messages, timeout=timeout)
        got = [m for m in sub.messages if m.retain]
        return got[-1].payload if got else None
    finally:
        sub.stop()


class GatewayProcess:
    """`python -m gateway run -c CONFIG` as a real subprocess."""

    def __init__(self, config: Path, log: Path, args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.args = args or []
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        logf = open(self.log, "ab")  # noqa: SIM115
        env = dict(os.environ)
        # The simulator's temporary trees (sysfs, serial links) go beside the log, in
        # the test's own directory: a gateway a test SIGKILLs leaves nothing in /tmp.
        tmp = self.log.parent / "gateway-tmp"
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--log-level", "debug", "run", "-c",
             str(self.config), *self.args],
            stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, env=env,
        )
        logf.close()
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running(gw: GatewayProcess) -> Iterator[GatewayProcess]:
    gw.start()
    try:
        yield gw
    finally:
        gw.kill()


def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll `cond` (tests only) until it holds or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@contextmanager
def running_gateway(cfg: Config) -> Iterator[Gateway]:
    """An in-process Gateway on its own thread, stopped (and checked stopped) at exit."""
    from gateway.daemon import Gateway

    gw = Gateway(cfg)
    runner = threading.Thread(target=gw.run, name="test-gateway", daemon=True)
    runner.start()
    try:
        yield gw
    finally:
        gw.request_stop()
        runner.join(30)
        assert not runner.is_alive(), "the gateway did not stop"


def spool_rows(device: str, seqs: range | list[int]) -> list[NewRow]:
    """Rows for the spool as the outbox makes them (topic `p/<device>`, payload `{"seq":n}`)."""
    from gateway.outbox.spool import NewRow

    return [NewRow(device, f"p/{device}", s, f'{{"seq":{s}}}'.encode()) for s in seqs]


def seqs_on_disk(path: Path) -> list[tuple[str, int]]:
    """(device, seq) of every row in the spool file, in id order."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [(d, int(q)) for d, q in db.execute("SELECT device, seq FROM messages ORDER BY id")]
    finally:
        db.close()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tmp102_devices(names: list[str], interval: str) -> str:
    """A `devices:` block of simulated TMP102s on bus 1 from 0x48 up (YAML text)."""
    return "devices:\n" + "".join(
        f"  - name: {name}\n    driver: tmp102\n    bus: 1\n    address: {0x48 + i}\n"
        f"    interval: {interval}\n" for i, name in enumerate(names))


def sim_header(gateway_id: str, port: int, tmp_path: Path, gateway_extra: str = "") -> str:
    """The config lines every simulated end-to-end test starts with (YAML text)."""
    extra = "".join(f"{line}\n" for line in gateway_extra.split("\n") if line)
    return (
        f"gateway:\n  id: {gateway_id}\n  simulate: true\n{extra}"
        f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n"
        f"buffer:\n  path: {tmp_path}/spool.db\n"
    )
