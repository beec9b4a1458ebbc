#!/usr/bin/env python3
"""The Eclipse Paho interoperability suite's subscribe-failure case, with paho-mqtt 2.x, against
a broker at HOST PORT whose ACL denies `test/nosubscribe` to USER (password PASSWORD): the
SUBACK return code is 0x80 in MQTT 3.1.1 (§3.9.3 of 3.1.1) and 0x87 Not authorized in 5.0
(§3.9.3). Also a granted subscription next to it, so a broker refusing everything fails.
Exit 0 when both protocols pass."""

import queue
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 10.0


def check(host, port, user, password, protocol, allowed):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{protocol}", protocol=protocol)
    c.username_pw_set(user, password)
    connected, subscribed = queue.Queue(), queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: subscribed.put(codes)
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        reason = connected.get(timeout=TIMEOUT)
        if reason.is_failure:
            raise RuntimeError(f"CONNACK refused: {reason}")
        c.subscribe([("test/nosubscribe", 2), (allowed, 1)])
        codes = [code.value for code in subscribed.get(timeout=TIMEOUT)]
        denied = 0x80 if protocol == mqtt.MQTTv311 else 0x87
        if codes != [denied, 1]:
            raise RuntimeError(f"SUBACK return codes {codes}, expected [{denied:#x}, 1]")
    finally:
        c.loop_stop()
        c.disconnect()


def main():
    host, port, user, password, allowed = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
    for protocol in (mqtt.MQTTv311, mqtt.MQTTv5):
        check(host, port, user, password, protocol, allowed)
        print(f"paho acl: subscribe failure ok ({protocol})")


if __name__ == "__main__":
    main()
