#!/usr/bin/env python3
"""Real clients: paho-mqtt 2.x publishes and subscribes through a broker at HOST PORT, MQTT 3.1.1
and 5.0, QoS 0, 1 and 2. Exit 0 when every case passes."""

import os
import queue
import sys

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 10.0


def client(client_id, protocol):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    connected = queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    return c, connected


def start(c, connected, host, port, protocol):
    if protocol == mqtt.MQTTv5:
        c.connect(host, port, keepalive=30, clean_start=True)
    else:
        c.connect(host, port, keepalive=30)
    c.loop_start()
    reason = connected.get(timeout=TIMEOUT)
    if reason.is_failure:
        raise RuntimeError(f"CONNACK refused: {reason}")


def check(host, port, protocol, name, qos):
    tag = f"{name}-q{qos}-{os.getpid()}"
    topic = f"rc/paho/{tag}"
    payload = f"hello {tag}".encode()
    received = queue.Queue()
    subscribed = queue.Queue()

    sub, sub_connected = client(f"psub-{tag}", protocol)
    sub.on_message = lambda _c, _u, msg: received.put(msg)
    sub.on_subscribe = lambda _c, _u, _mid, codes, _p: subscribed.put(codes)
    pub, pub_connected = client(f"ppub-{tag}", protocol)
    try:
        start(sub, sub_connected, host, port, protocol)
        sub.subscribe(topic, qos=qos)
        codes = subscribed.get(timeout=TIMEOUT)
        if any(c.is_failure for c in codes) or codes[0].value != qos:
            raise RuntimeError(f"SUBACK {codes}")
        start(pub, pub_connected, host, port, protocol)
        # One publish after the SUBACK: the broker acknowledges a subscription only once every
        # shard routes it, so the message must arrive whichever shard the publisher is on.
        info = pub.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=TIMEOUT)
        if not info.is_published():
            raise RuntimeError("publish not completed")
        try:
            msg = received.get(timeout=TIMEOUT)
        except queue.Empty:
            raise RuntimeError("nothing received") from None
        if msg.payload != payload or msg.qos != qos or msg.topic != topic:
            raise RuntimeError(f"got {msg.topic} {msg.payload!r} QoS {msg.qos}")
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: paho_check.py HOST PORT")
    host, port = sys.argv[1], int(sys.argv[2])
    failures = 0
    for protocol, name in ((mqtt.MQTTv311, "3.1.1"), (mqtt.MQTTv5, "5.0")):
        for qos in (0, 1, 2):
            try:
                check(host, port, protocol, name, qos)
                print(f"ok   paho-mqtt {paho.mqtt.__version__} MQTT {name} QoS {qos}")
            except Exception as e:  # noqa: BLE001 (report every case)
                print(f"FAIL paho-mqtt MQTT {name} QoS {qos}: {e!r}")
                failures += 1
    if failures:
        sys.exit(f"paho-mqtt: {failures} case(s) failed")
    print("paho-mqtt: all 6 cases passed")


if __name__ == "__main__":
    main()
