"""Control latency: `set` published -> output switched -> `result` received.

An in-process gateway with a simulated relay (gpio) and a setpoint register on a
simulated Modbus slave polled every second, against a real Mosquitto. One client
publishes N commands one after the other (each waits for its result, received by a
second client), alternating two values. Reported: when the relay line changed
(from the simulator's history) and when the result arrived, median / p95 / max.

Run with and without Mosquitto's `set_tcp_nodelay true`: by default Mosquitto leaves
Nagle's algorithm on, and a small message to a client whose previous segment is not yet
acknowledged waits for the client's delayed ACK (~40 ms on Linux).

    .venv/bin/python benchmarks/bench_control.py [--nodelay] [-n 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import parse_config
from tests.support import Mosquitto, running_gateway


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return (f"median {statistics.median(ms):6.1f} ms  p95 {ms[int(len(ms) * 0.95) - 1]:6.1f} ms  "
            f"max {ms[-1]:6.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodelay", action="store_true", help="Mosquitto with set_tcp_nodelay true")
    ap.add_argument("-n", type=int, default=100, help="commands per output")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-control-"))
    broker = Mosquitto(tmp / "broker", extra_conf="set_tcp_nodelay true\n" if args.nodelay else "")
    broker.start()
    cfg = parse_config(
        f"gateway: {{id: bench, simulate: true}}\nmqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
        f"buffer: {{path: {tmp}/spool.db}}\n"
        "devices:\n  - {name: meter, driver: modbus_rtu, port: /dev/ttyUSB1, slave: 1, "
        "interval: 1s, registers: [{name: voltage, address: 0}]}\n"
        "outputs:\n  - {name: relay, kind: gpio, line: 17, commands: true}\n"
        "  - {name: setpoint, kind: modbus_register, device: meter, address: 10, initial: 0, "
        "commands: true}\n")
    arrived: dict[str, float] = {}
    ready = threading.Event()

    def on_result(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        ident = json.loads(msg.payload).get("id")
        if ident:
            arrived[ident] = time.monotonic()
            ready.set()

    results = mqtt.Client(CallbackAPIVersion.VERSION2)
    results.on_message = on_result
    results.connect("127.0.0.1", broker.port)
    results.subscribe("gateway/bench/+/result", 1)
    results.loop_start()
    sender = mqtt.Client(CallbackAPIVersion.VERSION2)
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    try:
        with running_gateway(cfg) as gw:
            assert gw.sim is not None
            time.sleep(2)  # connected, subscribed, initial states set
            relay = gw.sim.outputs["relay"]
            print(f"Mosquitto set_tcp_nodelay {'true' if args.nodelay else 'false (default)'}, "
                  f"{args.n} commands per output")
            for output, values in (("relay", ("ON", "OFF")), ("setpoint", ("10", "20"))):
                done: list[float] = []
                switched: list[float] = []
                for i in range(args.n):
                    ident = f"{output}-{i}"
                    ready.clear()
                    t0 = time.monotonic()
                    payload = json.dumps({"value": values[i % 2], "id": ident})
                    sender.publish(f"gateway/bench/{output}/set", payload, qos=1)
                    while ident not in arrived:
                        if not ready.wait(10):
                            raise TimeoutError(f"no result for {ident}")
                        ready.clear()
                    done.append((arrived[ident] - t0) * 1000)
                    if output == "relay":
                        switched.append((relay.history[-1][0] - t0) * 1000)
                if switched:
                    print(f"  relay switched   {summary(switched)}")
                print(f"  {output + ' result':<16} {summary(done)}")
    finally:
        sender.loop_stop()
        results.loop_stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
