"""`edge-gateway watch [-c CONFIG] [--broker HOST[:PORT]]`: a live table of what a gateway publishes.

Subscribes to `{topic_prefix}/#` with the config's broker settings (host,
port, TLS, username/password) and redraws a table about once a second:
device, latest values, seq, age, health state (from `{prefix}/health`) and
the gateway's online/offline status. paho's callbacks only put messages on a
queue; this thread blocks on that queue, so an idle screen costs no CPU.

Only the broker is needed: with `--broker` and no readable config, the topic
prefix is `--prefix`, or the first gateway found under `gateway/+`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from gateway.cli import DEFAULT_CONFIG, EXIT_CONFIG, command
from gateway.commands import UNREADABLE_HINT, load_or_report
from gateway.mqtt.credentials import SecretError, read_password, tls_context
from gateway.reading import parse_ts

if TYPE_CHECKING:
    from gateway.config.model import Config, TlsSection  # pydantic: types only (see gateway.commands)

log = logging.getLogger("gateway.watch")

CLEAR = "\x1b[H\x1b[2J"
HOME = "\x1b[H"
CLEAR_BELOW = "\x1b[J"
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"


@dataclass
class Row:
    values: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None
    ts: float | None = None  # Unix time of the reading (from its payload)
    received: float = 0.0  # Unix time it arrived here
    count: int = 0


@dataclass
class WatchState:
    """Everything the table shows, updated from MQTT messages (pure; easy to test).

    A prefix with a `+` level (`gateway/+`) settles on the first gateway heard from;
    the others are listed in `others`.
    """

    prefix: str
    status: str = "unknown"
    health: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, Row] = field(default_factory=dict)
    messages: int = 0
    #: Devices expected (from the config), shown before their first reading.
    expected: list[str] = field(default_factory=list)
    others: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.pattern = self.prefix.split("/")

    def _match(self, topic: str) -> str | None:
        """The part of `topic` after the prefix, or None when it is not under it."""
        got = topic.split("/")
        n = len(self.pattern)
        if len(got) <= n or any(w not in (g, "+") for w, g in zip(self.pattern, got, strict=False)):
            return None
        concrete = "/".join(got[:n])
        if "+" in self.pattern:
            if "+" in self.prefix:
                self.prefix = concrete  # the first gateway heard from
            elif concrete != self.prefix:
                self.others.add(concrete)
                return None
        return "/".join(got[n:])

    def update(self, topic: str, payload: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        rest = self._match(topic)
        if rest is None:
            return
        if "/" in rest:
            return  # not a reading topic
        self.messages += 1
        if rest == "status":
            self.status = payload.decode("utf-8", "replace").strip() or "unknown"
            return
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if rest == "health":
            self.health = body
            return
        row = self.rows.setdefault(rest, Row())
        seq = body.get("seq")
        row.seq = seq if isinstance(seq, int) else None
        row.ts = parse_ts(body.get("ts"))
        # Envelope keys are the gateway's; `clock: unsynced` marks a ts taken before NTP.
        row.values = {k: v for k, v in body.items() if k not in ("seq", "ts", "clock")}
        row.received = now
        row.count += 1


def devices_known(state: WatchState) -> list[str]:
    """Every device the table has a line for: readings, health and the config."""
    devices = state.health.get("devices", {}) if isinstance(state.health, dict) else {}
    return sorted(set(state.rows) | set(devices if isinstance(devices, dict) else {})
                  | set(state.expected))


def format_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    if isinstance(v, list | dict):
        text = json.dumps(v, separators=(",", ":"))
        return text if len(text) <= 40 else text[:37] + "..."
    return str(v)


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.0f}h"


def render(state: WatchState, now: float | None = None, width: int = 100,
           broker: str | None = None) -> str:
    """The table as plain text (no escape codes), one line per device.

    `width` > 0: values wrap between `key=value` items onto lines indented to the
    VALUES column, so no line is longer than `width` (an item too long on its own is
    cut with an ellipsis). `broker`: the connection problem to show, if any.
    """
    now = time.time() if now is None else now
    devices = state.health.get("devices", {}) if isinstance(state.health, dict) else {}
    bhealth = state.health.get("broker", {}) if isinstance(state.health, dict) else {}
    spool = state.health.get("spool", {}) if isinstance(state.health, dict) else {}
    head = f"edge-gateway watch  {state.prefix}/#   gateway: {state.status}"
    if spool:
        head += f"   spool: {spool.get('depth', '?')}"
    if isinstance(bhealth, dict) and bhealth.get("reconnects"):
        head += f"   reconnects: {bhealth['reconnects']}"
    lines = [_fit(head, width)]
    if broker:
        lines.append(_fit(broker, width))
    if state.others:
        lines.append(_fit("other gateways on this broker: " + ", ".join(sorted(state.others))
                          + " (choose one with --prefix)", width))
    lines.append("")
    names = devices_known(state)
    table: list[tuple[str, str, str, str, list[str]]] = [("DEVICE", "STATE", "SEQ", "AGE", ["VALUES"])]
    for name in names:
        row = state.rows.get(name)
        dh = devices.get(name, {}) if isinstance(devices, dict) else {}
        health_state = str(dh.get("state", "-")) if isinstance(dh, dict) else "-"
        if row is None:
            # Health may say "ok" (the gateway reads it) before a reading reached us:
            # the state here is about what this table has seen.
            shown = health_state if health_state not in ("ok", "-") else "waiting"
            table.append((name, shown, "-", "-", ["(no reading yet)"]))
            continue
        when = row.ts if row.ts is not None else row.received
        values = [f"{k}={format_value(v)}" for k, v in row.values.items()]
        table.append((name, health_state, str(row.seq if row.seq is not None else "-"),
                      format_age(now - when), values))
    widths = [max(len(cells[i]) for *cells, _ in table) for i in range(4)]
    for *cells, items in table:
        lead = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  "
        lines.extend(_wrap(lead, items, width))
    if not names:
        lines.append("(waiting for readings...)")
    for name in names:
        dh = devices.get(name, {}) if isinstance(devices, dict) else {}
        if isinstance(dh, dict) and dh.get("state") == "failing" and dh.get("last_error"):
            lines.append(_fit(f"  {name}: {dh['last_error']}", width))
    return "\n".join(lines) + "\n"


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` columns with an ellipsis (width <= 0: unlimited)."""
    if width <= 0 or len(text) <= width:
        return text
    return text[:max(0, width - 1)] + "…"


def _wrap(lead: str, items: list[str], width: int) -> list[str]:
    """`lead` then the items two spaces apart, wrapped between items to `width`."""
    if width <= 0 or len(lead) + len("  ".join(items)) <= width:
        return [lead + "  ".join(items)]
    room = width - len(lead)
    if room < 12:  # a terminal too narrow for the columns: one line, cut
        return [_fit(lead + "  ".join(items), width)]
    out: list[str] = []
    current = ""
    for item in items:
        item = _fit(item, room)
        if current and len(current) + 2 + len(item) > room:
            out.append(current)
            current = item
        else:
            current = f"{current}  {item}" if current else item
    out.append(current)
    indent = " " * len(lead)
    return [lead + out[0]] + [indent + rest for rest in out[1:]]


# ------------------------------------------------------------------ MQTT side


@dataclass
class Broker:
    """Where and how to subscribe: from the config, or from --broker alone."""

    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "gateway/+"
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    tls: TlsSection | None = None
    client_name: str = "any"

    @classmethod
    def from_config(cls, cfg: Config) -> Broker:
        m = cfg.mqtt
        return cls(host=m.host, port=m.port, prefix=cfg.topic_prefix, protocol=m.protocol,
                   username=m.username,
                   password=read_password(cfg) if m.username is not None else None,
                   tls=m.tls, client_name=cfg.gateway.id)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def expected_devices(cfg: Config) -> list[str]:
    """The devices a config publishes (the inference worker is one too)."""
    return [d.name for d in cfg.devices] + ([cfg.inference.name] if cfg.inference.enabled else [])


def unreachable(b: Broker, timeout: float = 5.0) -> str:
    """Why the broker cannot be reached (paho's failed connect does not say)."""
    try:
        with socket.create_connection((b.host, b.port), timeout=timeout):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        hint = ("is the gateway's broker running?" if isinstance(exc, ConnectionRefusedError)
                else "is the host name and port right, and the broker reachable?")
        return f"cannot connect to {b.address}: {why} — {hint}"
    return f"cannot connect to {b.address} (retrying)"


def _client(b: Broker, inbox: queue.SimpleQueue[tuple[str, bytes]]) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    v5 = b.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"edge-gateway-watch-{b.client_name}-{int(time.time() * 1000) % 100000}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    if b.username is not None:
        client.username_pw_set(b.username, b.password)
    if b.tls is not None:
        client.tls_set_context(tls_context(b.tls, warn=False))
    topic = f"{b.prefix}/#"

    def on_connect(c: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            inbox.put(("\0error", f"{b.address} refused the connection: {rc}".encode()))
            return
        c.subscribe(topic, qos=0)
        inbox.put(("\0connected", b""))

    def on_connect_fail(c: Any, userdata: Any) -> None:
        inbox.put(("\0error", unreachable(b).encode()))

    def on_disconnect(c: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        inbox.put(("\0error", f"disconnected from {b.address}: {rc} (reconnecting)".encode()))

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        inbox.put((msg.topic, bytes(msg.payload)))

    client.on_connect = on_connect
    client.on_connect_fail = on_connect_fail
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.reconnect_delay_set(1, 5)
    client.connect_async(b.host, b.port, keepalive=30)
    return client


def watch(b: Broker, *, once: bool = False, timeout: float = 15.0, out: TextIO = sys.stdout,
          err: TextIO = sys.stderr, interval: float = 1.0, expected: list[str] | None = None) -> int:
    """Show the table until Ctrl-C (or, with `once`, print it once and return).

    `once` waits until every known device (config, health) has a reading, or
    `timeout`; exit 1 with the reason on `err` when no reading arrived.
    """
    inbox: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
    state = WatchState(b.prefix, expected=list(expected or []))
    client = _client(b, inbox)
    client.loop_start()
    ansi = not once and out.isatty()
    error: str | None = None
    connected = False
    try:
        if ansi:
            out.write(HIDE_CURSOR + CLEAR)
        deadline = time.monotonic() + timeout
        next_draw = time.monotonic()
        while True:
            now = time.monotonic()
            if once:
                names = devices_known(state)
                if now >= deadline or (state.rows and all(n in state.rows for n in names)):
                    break
                wait = deadline - now
            else:
                wait = max(0.0, next_draw - now)
            try:
                topic, payload = inbox.get(timeout=wait)
            except queue.Empty:
                pass
            else:
                if topic == "\0error":
                    error, connected = payload.decode(), False
                elif topic == "\0connected":
                    error, connected = None, True
                else:
                    state.update(topic, payload)
            if not once and time.monotonic() >= next_draw:
                width = _width(out)
                text = render(state, width=width, broker=_fit(error, width) if error else None)
                out.write((HOME + text.replace("\n", "\x1b[K\n") + CLEAR_BELOW) if ansi else text)
                out.flush()
                next_draw = time.monotonic() + interval
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
        if ansi:
            out.write(SHOW_CURSOR)
            out.flush()
    if not once:
        return 0
    out.write(render(state, width=_width(out)))
    out.flush()
    if state.rows:
        return 0
    if not connected:
        print(error or f"cannot connect to {b.address} within {timeout:g} s", file=err)
    else:
        status = "" if state.status == "unknown" else f" (gateway status: {state.status})"
        print(f"no reading under {state.prefix}/# within {timeout:g} s{status}: is the gateway "
              "running and publishing to this broker?", file=err)
    return 1


def _width(out: TextIO) -> int:
    try:
        return shutil.get_terminal_size((120, 24)).columns if out.isatty() else 0
    except (OSError, ValueError):
        return 0


# ------------------------------------------------------------------ CLI

WATCH_HELP = """\
Subscribes to {prefix}/# with the config's broker settings (host, port, TLS,
username and password) and redraws a table of every device once a second: state,
seq, age and latest values, and the gateway's status and spool depth.

Only the broker is needed: with --broker and no readable config, it watches the
gateway given by --prefix, or the first one found under gateway/+. The installed
config is readable by root and group edge-gateway only.

exit status (--once): 0 when readings arrived, 1 when none did within --timeout
(the reason on stderr: broker unreachable, or nothing published), 2 for a config
or option problem."""


def add_parser(sub: Any) -> None:
    p = command(sub, "watch", "show a live table of the readings a gateway publishes", WATCH_HELP,
                "  edge-gateway watch                          # the installed config's broker\n"
                "  edge-gateway watch -c config/simulator.yaml\n"
                "  edge-gateway watch --broker 127.0.0.1:1883  # no config needed\n"
                "  edge-gateway watch --broker pi.local --prefix gateway/greenhouse-1 --once\n")
    p.add_argument("-c", "--config", metavar="FILE", default=None,
                   help=f"YAML config file (default: {DEFAULT_CONFIG}; optional with --broker)")
    p.add_argument("--broker", metavar="HOST[:PORT]",
                   help="subscribe here instead of the config's mqtt host and port (port 1883)")
    p.add_argument("--prefix", metavar="TOPIC",
                   help="topic prefix of the gateway (default: the config's, else gateway/+)")
    p.add_argument("--once", action="store_true",
                   help="print the table once every device has a reading, and exit; "
                        "exit 1 if no reading arrived within --timeout")
    p.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS",
                   help="with --once: how long to wait for readings (default: 15)")
    p.set_defaults(func="gateway.commands.watch:main")


def parse_broker(text: str) -> tuple[str, int] | None:
    """`HOST`, `HOST:PORT`, `:PORT` or `[v6]:PORT` -> (host, port); None when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or (host and not host.endswith("]") and ":" in host):
        host, port = text, "1883"  # no port (or a bare IPv6 address)
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def main(args: argparse.Namespace) -> int:
    override = None
    if args.broker:
        override = parse_broker(str(args.broker))
        if override is None:
            print(f"--broker: expected HOST or HOST:PORT, got {args.broker!r}", file=sys.stderr)
            return EXIT_CONFIG
    path = args.config or DEFAULT_CONFIG
    b: Broker | None = None
    expected: list[str] = []
    if args.config is None and override is not None and not os.access(path, os.R_OK):
        b = Broker()  # no config needed: the broker alone
    if b is None:
        hint = (UNREADABLE_HINT + ", or pass --broker HOST[:PORT] [--prefix TOPIC] without -c")
        cfg = load_or_report(path, unreadable_hint=hint)
        if cfg is None:
            if override is None:
                return EXIT_CONFIG
            print("watching with --broker alone", file=sys.stderr)
            b = Broker()
        else:
            try:
                b = Broker.from_config(cfg)
            except SecretError as exc:
                print(f"{path}: {exc}", file=sys.stderr)
                return EXIT_CONFIG
            expected = expected_devices(cfg)
    if override is not None:
        b.host, b.port = override
    if args.prefix:
        b.prefix = str(args.prefix).rstrip("/")
    return watch(b, once=bool(args.once), timeout=float(args.timeout), expected=expected)
