"""`edge-gateway watch -c CONFIG`: a live table of what the gateway publishes.

Subscribes to `{topic_prefix}/#` with the config's broker settings (host,
port, TLS, username/password) and redraws a table about once a second:
device, latest values, seq, age, health state (from `{prefix}/health`) and
the gateway's online/offline status. paho's callbacks only put messages on a
queue; this thread blocks on that queue, so an idle screen costs no CPU.
"""

from __future__ import annotations

import argparse
import calendar
import json
import logging
import queue
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from gateway.cli import EXIT_CONFIG

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
    """Everything the table shows, updated from MQTT messages (pure; easy to test)."""

    prefix: str
    status: str = "unknown"
    health: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, Row] = field(default_factory=dict)
    messages: int = 0

    def update(self, topic: str, payload: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if not topic.startswith(self.prefix + "/"):
            return
        rest = topic[len(self.prefix) + 1:]
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
        row.values = {k: v for k, v in body.items() if k not in ("seq", "ts")}
        row.received = now
        row.count += 1


def parse_ts(text: Any) -> float | None:
    """`2026-11-25T10:00:00.123Z` -> Unix time (None when absent or malformed)."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    main, _, frac = text[:-1].partition(".")
    try:
        secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        return secs + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return None


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


def render(state: WatchState, now: float | None = None, width: int = 100) -> str:
    """The table as plain text (no escape codes), one line per device."""
    now = time.time() if now is None else now
    devices = state.health.get("devices", {}) if isinstance(state.health, dict) else {}
    broker = state.health.get("broker", {}) if isinstance(state.health, dict) else {}
    spool = state.health.get("spool", {}) if isinstance(state.health, dict) else {}
    head = f"edge-gateway watch  {state.prefix}/#   gateway: {state.status}"
    if spool:
        head += f"   spool: {spool.get('depth', '?')}"
    if isinstance(broker, dict) and broker.get("reconnects"):
        head += f"   reconnects: {broker['reconnects']}"
    lines = [head, ""]
    names = sorted(set(state.rows) | set(devices if isinstance(devices, dict) else {}))
    table = [("DEVICE", "STATE", "SEQ", "AGE", "VALUES")]
    for name in names:
        row = state.rows.get(name)
        dh = devices.get(name, {}) if isinstance(devices, dict) else {}
        health_state = str(dh.get("state", "-")) if isinstance(dh, dict) else "-"
        if row is None:
            table.append((name, health_state, "-", "-", "(no reading yet)"))
            continue
        when = row.ts if row.ts is not None else row.received
        values = "  ".join(f"{k}={format_value(v)}" for k, v in row.values.items())
        table.append((name, health_state, str(row.seq if row.seq is not None else "-"),
                      format_age(now - when), values))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        line = "  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4]
        lines.append(line[:width] if width > 0 else line)
    if not names:
        lines.append("(waiting for readings...)")
    for name in names:
        dh = devices.get(name, {}) if isinstance(devices, dict) else {}
        if isinstance(dh, dict) and dh.get("state") == "failing" and dh.get("last_error"):
            err = f"  {name}: {dh['last_error']}"
            lines.append(err[:width] if width > 0 else err)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ MQTT side


def _client(cfg: Any, host: str, port: int, inbox: queue.SimpleQueue[tuple[str, bytes]]) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway.mqtt.publisher import read_password

    m = cfg.mqtt
    v5 = m.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"edge-gateway-watch-{cfg.gateway.id}-{int(time.time() * 1000) % 100000}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    if m.username is not None:
        client.username_pw_set(m.username, read_password(cfg))
    if m.tls is not None:
        t = m.tls
        ctx = ssl.create_default_context(cafile=str(t.ca_file) if t.ca_file else None)
        if t.cert_file is not None:
            ctx.load_cert_chain(str(t.cert_file), str(t.key_file) if t.key_file else None)
        if t.insecure:
            ctx.check_hostname = False
        client.tls_set_context(ctx)
    topic = f"{cfg.topic_prefix}/#"

    def on_connect(c: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            inbox.put(("\0error", f"connection refused: {rc}".encode()))
            return
        c.subscribe(topic, qos=0)
        inbox.put(("\0connected", b""))

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        inbox.put((msg.topic, bytes(msg.payload)))

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(1, 5)
    client.connect_async(host, port, keepalive=30)
    return client


def watch(cfg: Any, host: str, port: int, *, once: bool = False, timeout: float = 10.0,
          out: TextIO = sys.stdout, interval: float = 1.0) -> int:
    """Show the table until Ctrl-C (or, with `once`, print it once and return)."""
    inbox: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
    state = WatchState(cfg.topic_prefix)
    client = _client(cfg, host, port, inbox)
    client.loop_start()
    ansi = not once and out.isatty()
    error: str | None = None
    try:
        if ansi:
            out.write(HIDE_CURSOR + CLEAR)
        deadline = time.monotonic() + timeout
        settle: float | None = None  # --once: stop one second after the first reading
        next_draw = time.monotonic()
        while True:
            now = time.monotonic()
            if once:
                if now >= deadline or (settle is not None and now >= settle):
                    break
                wait = (settle if settle is not None else deadline) - now
            else:
                wait = max(0.0, next_draw - now)
            try:
                topic, payload = inbox.get(timeout=wait)
            except queue.Empty:
                pass
            else:
                if topic == "\0error":
                    error = payload.decode()
                elif topic != "\0connected":
                    state.update(topic, payload)
                    if once and settle is None and state.rows:
                        settle = time.monotonic() + 1.0
            if not once and time.monotonic() >= next_draw:
                text = render(state, width=_width(out))
                if error:
                    text += f"\n{error}\n"
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
    if once:
        out.write(render(state, width=_width(out)))
        if error:
            print(error, file=sys.stderr)
        return 0 if state.rows else 1
    return 0


def _width(out: TextIO) -> int:
    import shutil

    try:
        return shutil.get_terminal_size((120, 24)).columns if out.isatty() else 0
    except (OSError, ValueError):
        return 0


# ------------------------------------------------------------------ CLI


def add_parser(sub: Any) -> None:
    p = sub.add_parser("watch", help="show a live table of the readings a gateway publishes")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="YAML config file")
    p.add_argument("--broker", metavar="HOST:PORT", help="override the config's mqtt host and port")
    p.add_argument("--once", action="store_true",
                   help="print the table once (after the first readings arrive) and exit; "
                        "exit 1 if none arrived within --timeout")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="with --once: how long to wait for readings (default: 10)")
    p.set_defaults(func="gateway.commands.watch:main")


def main(args: argparse.Namespace) -> int:
    from gateway.commands import load_or_report
    from gateway.mqtt.publisher import SecretError

    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    host, port = cfg.mqtt.host, cfg.mqtt.port
    if args.broker:
        h, sep, p = str(args.broker).rpartition(":")
        if not sep or not p.isdigit():
            print(f"--broker: expected HOST:PORT, got {args.broker!r}", file=sys.stderr)
            return EXIT_CONFIG
        host, port = h or host, int(p)
    try:
        return watch(cfg, host, port, once=bool(args.once), timeout=float(args.timeout))
    except SecretError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
