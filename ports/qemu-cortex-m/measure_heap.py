#!/usr/bin/env python3
"""Heap per connected client on the board: connects SOCKETS clients one after another, each
subscribing to a topic of its own and to one shared topic at QoS 1, and reads the board's log
(LOG, QEMU's -serial file) where every accept prints the heap in use, which is then the heap of
the clients connected before it. Prints the cost per client and how many fit in the heap."""

import queue
import re
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HEAP = 64 * 1024


def accepts(log):
    with open(log, encoding="utf-8", errors="replace") as f:
        return [
            (int(m.group(1)), int(m.group(2)))
            for m in re.finditer(r"accept conn=\d+ .*?heap used=(\d+) peak=(\d+)", f.read())
        ]


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: measure_heap.py HOST PORT LOG [SOCKETS]")
    host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sockets = int(sys.argv[4]) if len(sys.argv) == 5 else 8
    before = len(accepts(log))
    clients = []
    for i in range(sockets):
        ready = queue.Queue()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"measure-client-{i:02}")
        c.on_connect = lambda _c, _u, _f, reason, _p, ready=ready: ready.put(reason)
        c.on_subscribe = lambda _c, _u, _mid, codes, _p, ready=ready: ready.put(codes)
        c.connect(host, port, keepalive=60)
        c.loop_start()
        ready.get(timeout=10)
        c.subscribe([(f"measure/own/{i}", 1), ("measure/shared", 1)])
        ready.get(timeout=10)
        clients.append(c)
        time.sleep(0.1)
    time.sleep(0.5)
    seen = accepts(log)[before:]
    for c in clients:
        c.disconnect()
        c.loop_stop()
    used = [u for u, _ in seen]
    # used[k] is the heap with k clients connected and subscribed.
    per_client = (used[-1] - used[1]) / (len(used) - 2)
    print("heap used with k clients:", " ".join(f"{k}:{u}" for k, u in enumerate(used)))
    print(f"per client (connected, 2 subscriptions, idle): {per_client:.0f} bytes")
    print(f"clients that fit in {HEAP // 1024} KiB: {int((HEAP - used[1]) / per_client)}")


if __name__ == "__main__":
    main()
