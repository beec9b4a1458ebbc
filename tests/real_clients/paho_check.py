#!/usr/bin/env python3
"""paho-mqtt (a real client) publishes and subscribes through a broker at QoS 0, 1 and 2, over
MQTT 3.1.1 and 5.0. Usage: paho_check.py HOST PORT. Exits non-zero on any failure."""
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST, PORT = sys.argv[1], int(sys.argv[2])


def check(protocol, name):
    received = []
    done = threading.Event()

    def on_message(_client, _userdata, message):
        received.append((message.topic, message.payload, message.qos))
        if len(received) == 3:
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-sub-{name}", protocol=protocol)
    sub.on_message = on_message
    sub.connect(HOST, PORT)
    sub.loop_start()
    result, _ = sub.subscribe(f"paho/{name}/#", qos=2)
    assert result == mqtt.MQTT_ERR_SUCCESS, result
    time.sleep(0.3)

    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-pub-{name}", protocol=protocol)
    pub.connect(HOST, PORT)
    pub.loop_start()
    for qos in (0, 1, 2):
        info = pub.publish(f"paho/{name}/q{qos}", f"hello {qos}".encode(), qos=qos)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"QoS {qos} publish not completed"
    assert done.wait(5), f"{name}: received only {received}"
    got = sorted((topic, payload, qos) for topic, payload, qos in received)
    want = [(f"paho/{name}/q{q}", f"hello {q}".encode(), q) for q in (0, 1, 2)]
    assert got == want, f"{name}: {got} != {want}"
    for client in (pub, sub):
        client.disconnect()
        client.loop_stop()
    print(f"paho-mqtt {name}: QoS 0, 1, 2 delivered")


check(mqtt.MQTTv311, "v311")
check(mqtt.MQTTv5, "v5")
