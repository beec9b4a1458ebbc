#!/usr/bin/env python3
"""Round-trip latency through a broker at HOST PORT: one paho-mqtt client subscribes to a topic
and publishes to it N times (default 1000) at QoS QOS (default 0), each publish after the
previous message came back; prints p50, p90 and p99 in milliseconds. The same script against
the board in QEMU and against the Linux broker gives the figures of
docs/PORTING.md ("Bare metal (Cortex-M on QEMU)")."""

import queue
import socket
import statistics
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main():
    if len(sys.argv) not in (3, 4, 5):
        sys.exit("usage: latency.py HOST PORT [N] [QOS]")
    host, port = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    qos = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    got, ready = queue.Queue(), queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"latency-{time.time_ns()}")
    c.on_connect = lambda _c, _u, _f, reason, _p: ready.put(reason)
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: ready.put(codes)
    c.on_message = lambda _c, _u, msg: got.put(time.perf_counter())
    # paho leaves Nagle on: its PUBACK and the next PUBLISH would wait for the delayed ACK
    # (40 ms on Linux) of the host end of QEMU's forwarder, whatever the broker.
    c.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    c.connect(host, port, keepalive=60)
    c.loop_start()
    ready.get(timeout=10)
    topic = f"latency/{time.time_ns()}"
    c.subscribe(topic, qos=qos)
    ready.get(timeout=10)
    samples = []
    for i in range(n + 20):
        start = time.perf_counter()
        c.publish(topic, b"x" * 32, qos=qos)
        end = got.get(timeout=10)
        if i >= 20:  # warm-up
            samples.append((end - start) * 1000)
    c.disconnect()
    c.loop_stop()
    q = statistics.quantiles(samples, n=100)
    print(f"{host}:{port} QoS {qos} n={n} p50={q[49]:.3f} ms p90={q[89]:.3f} ms p99={q[98]:.3f} ms")


if __name__ == "__main__":
    main()
