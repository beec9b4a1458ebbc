#!/usr/bin/env python3
"""Real clients over TLS: paho-mqtt 2.x with tls_set publishes and subscribes through a broker's
mqtts:// listener at HOST PORT, verifying its certificate against CA (host name included), and
presenting CERT/KEY when given (mutual TLS). MQTT 3.1.1 and 5.0, QoS 1. Exit 0 when every case
passes. Usage: paho_tls_check.py HOST PORT CA [CERT KEY]. Run by musqratt/tests/tls.rs, which
makes the certificates."""

import os
import queue
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 10.0


def client(name, protocol, ca, identity):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=protocol)
    certfile, keyfile = identity if identity else (None, None)
    c.tls_set(ca_certs=ca, certfile=certfile, keyfile=keyfile)
    connected = queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    return c, connected


def start(c, connected, host, port):
    c.connect(host, port, keepalive=30)
    c.loop_start()
    reason = connected.get(timeout=TIMEOUT)
    if reason.is_failure:
        raise RuntimeError(f"CONNACK refused: {reason}")


def check(host, port, protocol, name, ca, identity):
    tag = f"{name}-{os.getpid()}"
    topic = f"rc/paho-tls/{tag}"
    payload = f"hello {tag}".encode()
    received, subscribed = queue.Queue(), queue.Queue()
    sub, sub_connected = client(f"tsub-{tag}", protocol, ca, identity)
    sub.on_message = lambda _c, _u, msg: received.put(msg)
    sub.on_subscribe = lambda _c, _u, _mid, codes, _p: subscribed.put(codes)
    pub, pub_connected = client(f"tpub-{tag}", protocol, ca, identity)
    try:
        start(sub, sub_connected, host, port)
        sub.subscribe(topic, qos=1)
        codes = subscribed.get(timeout=TIMEOUT)
        if any(c.is_failure for c in codes):
            raise RuntimeError(f"SUBACK {codes}")
        start(pub, pub_connected, host, port)
        info = pub.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=TIMEOUT)
        msg = received.get(timeout=TIMEOUT)
        if msg.payload != payload:
            raise RuntimeError(f"got {msg.payload!r}, want {payload!r}")
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def main():
    host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    identity = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else None
    failed = 0
    for protocol, name in ((mqtt.MQTTv311, "v311"), (mqtt.MQTTv5, "v5")):
        try:
            check(host, port, protocol, name, ca, identity)
            print(f"ok   paho tls {name}")
        except Exception as error:  # noqa: BLE001 - report every case
            failed += 1
            print(f"FAIL paho tls {name}: {error!r}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
