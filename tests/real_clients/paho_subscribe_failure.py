#!/usr/bin/env python3
"""The Eclipse Paho interoperability suite's `test_subscribe_failure`, as its client_test.py
(MQTT 3.1.1) and client_test5.py (MQTT 5.0) run it, redone with paho-mqtt 2.x against a broker
at HOST PORT whose ACL file denies `test/nosubscribe` to anonymous clients
(musqratt/tests/auth_files.rs starts one):

- client id `myclientid`, no user name (the suite's clients have none), clean session;
- one SUBSCRIBE of `test/nosubscribe` at QoS 2, alone;
- the SUBACK's first return code must be 0x80 Failure in 3.1.1 (§3.9.3 of 3.1.1).

In 5.0 the suite asks for 0x80 too, and its own client rejects any other failure code as a
protocol error (its decoder allows only 0, 1, 2 and 0x80), although MQTT 5.0 §3.9.3 lists 0x87
Not authorized for exactly this. MusQraTT answers 0x87 (docs/SECURITY.md), which this script
checks; the suite's 5.0 case fails on it (docs/SECURITY.md says so).

Then, on the same connection, a SUBSCRIBE the ACL allows is granted QoS 2 and a message
published to it arrives: a broker refusing everything does not pass.

Exit 0 when both protocols pass; prints one line per protocol.
"""

import queue
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 10.0
DENIED = {mqtt.MQTTv311: 0x80, mqtt.MQTTv5: 0x87}


def check(host, port, protocol):
    kwargs = {"clean_session": True} if protocol == mqtt.MQTTv311 else {}
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="myclientid", protocol=protocol, **kwargs
    )
    connected, subscribed, received = queue.Queue(), queue.Queue(), queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: subscribed.put(codes)
    c.on_message = lambda _c, _u, message: received.put((message.topic, message.payload))
    if protocol == mqtt.MQTTv5:
        c.connect(host, port, keepalive=60, clean_start=True)
    else:
        c.connect(host, port, keepalive=60)
    c.loop_start()
    try:
        reason = connected.get(timeout=TIMEOUT)
        if reason.is_failure:
            raise RuntimeError(f"CONNACK refused: {reason}")
        c.subscribe([("test/nosubscribe", 2)])
        codes = [code.value for code in subscribed.get(timeout=TIMEOUT)]
        if codes != [DENIED[protocol]]:
            raise RuntimeError(
                f"SUBACK return codes {codes}, expected [{DENIED[protocol]:#x}]"
            )
        c.subscribe([("TopicA", 2)])
        codes = [code.value for code in subscribed.get(timeout=TIMEOUT)]
        if codes != [2]:
            raise RuntimeError(f"SUBACK for TopicA {codes}, expected [2]")
        c.publish("TopicA", b"allowed", qos=1).wait_for_publish(TIMEOUT)
        got = received.get(timeout=TIMEOUT)
        if got != ("TopicA", b"allowed"):
            raise RuntimeError(f"received {got}")
    finally:
        c.loop_stop()
        c.disconnect()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    for protocol in (mqtt.MQTTv311, mqtt.MQTTv5):
        check(host, port, protocol)
        print(f"paho suite subscribe failure: ok ({protocol}, {DENIED[protocol]:#x})")


if __name__ == "__main__":
    main()
