"""Baseline: raw paho-mqtt QoS 1 publishes of gateway-shaped payloads, as fast as it goes.

Usage: raw_paho_publisher.py PORT COUNT DEVICES [RATE [PROTOCOL [INFLIGHT]]]
With RATE (messages/s, 0 = as fast as it goes) it paces itself; the payload's
`ts` is the send time, for latency. PROTOCOL is 5 (the gateway's default) or 3.1.1.
INFLIGHT is paho's max_inflight_messages (default 20, paho's own default).
"""

from __future__ import annotations

import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, __file__.rsplit("/benchmarks/", 1)[0])
from gateway.reading import format_ts


def main() -> int:
    port, count, devices = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    protocol = mqtt.MQTTv311 if len(sys.argv) > 5 and sys.argv[5] == "3.1.1" else mqtt.MQTTv5
    done = threading.Event()
    acked = 0

    def on_publish(client: object, userdata: object, mid: int, rc: object, props: object) -> None:
        nonlocal acked
        acked += 1
        if acked >= count:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-paho-bench", protocol=protocol)
    if len(sys.argv) > 6:
        c.max_inflight_messages_set(int(sys.argv[6]))
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.2)
    seqs = [0] * devices
    t0 = time.monotonic()
    for i in range(count):
        d = i % devices
        seqs[d] += 1
        if rate:
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        payload = f'{{"seq":{seqs[d]},"ts":"{format_ts(time.time())}","temperature_c":21.5}}'
        c.publish(f"bench/raw/t{d}", payload, qos=1)
    done.wait(120)
    elapsed = time.monotonic() - t0
    c.disconnect()
    c.loop_stop()
    print(f"{count / elapsed:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
