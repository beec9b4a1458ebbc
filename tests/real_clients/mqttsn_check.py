#!/usr/bin/env python3
"""A real MQTT-SN client against the broker: the PyPI package mqtt-sn-12 (its mqtt_sn_pub and
mqtt_sn_sub commands and its MqttSnClient API), with paho-mqtt on the MQTT side of the
cross-protocol cases. Section numbers are those of MQTT-SN 1.2.

usage: mqttsn_check.py HOST MQTT_PORT SN_PORT
The broker must have predefined topic 1 = "rc/predefined" (tests/real_clients/broker.toml).

What mqtt-sn-12 1.0.9 cannot express, and where it is covered instead: QoS 1 and 2 towards a
subscriber (its `polling` compares the decoded QoS, 1, with the flag value 0x20, so it never
sends PUBACK: a second QoS 1 message then waits for a retransmission), forwarder encapsulation,
ADVERTISE, retransmission and the will-update messages: the engine's SN transcripts and the
raw-UDP tests of the runtimes. Its subscriptions below are QoS 0 where more than one message
arrives.
"""

import os
import queue
import subprocess
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from mqttsn12.client.MqttSnClient import MqttSnClient, MqttSnListener
from mqttsn12.packets import PingReqPacket

TIMEOUT = 10


class Collect(MqttSnListener):
    def __init__(self):
        self.messages = queue.Queue()

    def message_arrived(self, msg):
        self.messages.put(msg)


def sn_client(host, port, client_id, keep_alive=30, will=None):
    client = MqttSnClient()
    client.set_client_id(client_id)
    client.set_keep_alive(keep_alive)
    client.set_timeout(TIMEOUT)
    if will:
        client.set_will(will[0], will[1], 0, False)
    client.open(host, port)
    client.send_connect()
    return client


def poll_until(client, listener, count):
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < count and time.monotonic() < deadline:
        client.polling()
        try:
            while len(got) < count:
                got.append(listener.messages.get_nowait())
        except queue.Empty:
            time.sleep(0.01)
    if len(got) < count:
        raise RuntimeError(f"{len(got)} of {count} messages arrived")
    return got


class MqttSide:
    """A paho-mqtt 3.1.1 client, subscribed to FILTER when given."""

    def __init__(self, host, port, subscribe=None):
        self.messages = queue.Queue()
        subscribed = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rc-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_: subscribed.put(True)
        self.client.connect(host, port)
        self.client.loop_start()
        if subscribe:
            self.client.subscribe(subscribe, qos=1)
            subscribed.get(timeout=TIMEOUT)

    def publish(self, topic, payload, qos=1, retain=False):
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(TIMEOUT)

    def receive(self):
        return self.messages.get(timeout=TIMEOUT)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def cli_pub_sub(host, port, topic, pub_qos, sub_qos):
    """mqtt_sn_sub -1 waits for one message; mqtt_sn_pub publishes until it has it (the
    subscriber says nothing when its SUBACK comes)."""
    message = f"cli-{pub_qos}-{sub_qos}-{uuid.uuid4().hex[:6]}"
    sub = subprocess.Popen(
        ["mqtt_sn_sub", "-h", host, "-p", str(port), "-t", topic, "-q", str(sub_qos), "-1",
         "-i", f"rcsub{os.getpid()}{pub_qos}", "--timeout", str(TIMEOUT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        time.sleep(0.3)
        while sub.poll() is None and time.monotonic() < deadline:
            subprocess.run(
                ["mqtt_sn_pub", "-h", host, "-p", str(port), "-t", topic, "-m", message,
                 "-q", str(pub_qos), "-i", f"rcpub{os.getpid()}{pub_qos}", "--timeout", "5"],
                check=True, capture_output=True, timeout=TIMEOUT)
            time.sleep(0.3)
        out, err = sub.communicate(timeout=TIMEOUT)
    finally:
        if sub.poll() is None:
            sub.kill()
    if message not in out:
        raise RuntimeError(f"mqtt_sn_sub printed {out!r} {err!r}")


def qos_minus_one_to_predefined(host, port, sn_port):
    """§6.8: QoS -1 without connecting, to predefined topic 1, reaches an MQTT subscriber."""
    side = MqttSide(host, port, "rc/predefined")
    try:
        subprocess.run(
            ["mqtt_sn_pub", "-h", host, "-p", str(sn_port), "-T", "1", "-q", "-1", "-m", "no-connect"],
            check=True, capture_output=True, timeout=TIMEOUT)
        msg = side.receive()
        if (msg.topic, msg.payload) != ("rc/predefined", b"no-connect"):
            raise RuntimeError(f"got {msg.topic} {msg.payload!r}")
    finally:
        side.close()


def sn_to_mqtt(host, port, sn_port):
    """REGISTER then PUBLISH QoS 0, 1 and 2 (§6.5, §6.7, §6.8) from an SN client to MQTT."""
    side = MqttSide(host, port, "rc/sn2mqtt/#")
    client = sn_client(host, sn_port, f"rcsn2m{os.getpid()}")
    try:
        for qos in (0, 1, 2):
            client.send_publish(f"rc/sn2mqtt/q{qos}", f"from-sn-{qos}".encode(), qos)
            msg = side.receive()
            if (msg.topic, msg.payload) != (f"rc/sn2mqtt/q{qos}", f"from-sn-{qos}".encode()):
                raise RuntimeError(f"got {msg.topic} {msg.payload!r}")
        client.send_disconnect()
    finally:
        client.close()
        side.close()


def mqtt_to_sn(host, port, sn_port):
    """An SN wildcard subscriber gets MQTT publishes after the broker REGISTERs the topic (§6.10),
    and a retained message on subscribe."""
    side = MqttSide(host, port)
    side.publish("rc/m2sn/kept", b"retained-for-sn", retain=True)
    client = sn_client(host, sn_port, f"rcm2sn{os.getpid()}")
    listener = Collect()
    try:
        client.send_subscribe("rc/m2sn/+", 0, listener)
        kept = poll_until(client, listener, 1)[0]
        if (kept.get_topic_name(), kept.get_payload()) != ("rc/m2sn/kept", b"retained-for-sn"):
            raise RuntimeError(f"retained: got {kept}")
        side.publish("rc/m2sn/live", b"from-mqtt")
        live = poll_until(client, listener, 1)[0]
        if (live.get_topic_name(), live.get_payload()) != ("rc/m2sn/live", b"from-mqtt"):
            raise RuntimeError(f"live: got {live}")
        client.send_disconnect()
    finally:
        side.publish("rc/m2sn/kept", b"", retain=True)
        client.close()
        side.close()


def short_topic(host, sn_port):
    """§3 short topic names: a 2-character topic, published and subscribed by name."""
    cli_pub_sub(host, sn_port, "rs", 1, 1)


def will_on_lost_client(host, port, sn_port):
    """§6.3 will exchange at CONNECT; a client silent past 1.5 x its keep alive is lost and its
    will reaches an MQTT subscriber."""
    side = MqttSide(host, port, "rc/will/#")
    client = sn_client(host, sn_port, f"rcwill{os.getpid()}", keep_alive=1,
                       will=("rc/will/gone", "sn-client-lost"))
    try:
        client.datagram_socket.close()  # no DISCONNECT: the client just goes quiet
        client.datagram_socket = None
        msg = side.receive()
        if (msg.topic, msg.payload) != ("rc/will/gone", b"sn-client-lost"):
            raise RuntimeError(f"got {msg.topic} {msg.payload!r}")
    finally:
        client.close()
        side.close()


def sleep_and_wake(host, port, sn_port):
    """§6.14: DISCONNECT with a duration puts the client to sleep; messages for it are kept;
    a PINGREQ with its client id delivers them."""
    client_id = f"rcsleep{os.getpid()}"
    client = sn_client(host, sn_port, client_id)
    listener = Collect()
    side = MqttSide(host, port)
    try:
        client.send_subscribe("rc/sleepy", 0, listener)
        client.send_disconnect(60)  # asleep for up to a minute
        side.publish("rc/sleepy", b"while-asleep-1")
        side.publish("rc/sleepy", b"while-asleep-2")
        time.sleep(0.3)
        client.polling()
        if not listener.messages.empty():
            raise RuntimeError("a sleeping client got a message before waking")
        # The library's PingReqPacket drops the client id its constructor takes: set it.
        ping = PingReqPacket()
        ping.client_id = client_id
        client.send_packet(ping.encode())
        got = [m.get_payload() for m in poll_until(client, listener, 2)]
        if got != [b"while-asleep-1", b"while-asleep-2"]:
            raise RuntimeError(f"got {got}")
    finally:
        client.close()
        side.close()


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: mqttsn_check.py HOST MQTT_PORT SN_PORT")
    host, port, sn_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cases = [
        ("mqtt_sn_pub -> mqtt_sn_sub, QoS 0", lambda: cli_pub_sub(host, sn_port, "rc/cli/q0", 0, 0)),
        ("mqtt_sn_pub -> mqtt_sn_sub, QoS 1", lambda: cli_pub_sub(host, sn_port, "rc/cli/q1", 1, 1)),
        ("mqtt_sn_pub QoS 2 -> mqtt_sn_sub QoS 1", lambda: cli_pub_sub(host, sn_port, "rc/cli/q2", 2, 1)),
        ("short topic name", lambda: short_topic(host, sn_port)),
        ("QoS -1 to a predefined topic", lambda: qos_minus_one_to_predefined(host, port, sn_port)),
        ("SN -> MQTT, QoS 0/1/2", lambda: sn_to_mqtt(host, port, sn_port)),
        ("MQTT -> SN, REGISTER and retained", lambda: mqtt_to_sn(host, port, sn_port)),
        ("will of a lost client", lambda: will_on_lost_client(host, port, sn_port)),
        ("sleep and wake-up", lambda: sleep_and_wake(host, port, sn_port)),
    ]
    failures = 0
    for name, case in cases:
        try:
            case()
            print(f"ok   mqtt-sn-12: {name}")
        except Exception as error:  # noqa: BLE001 - report every case
            failures += 1
            print(f"FAIL mqtt-sn-12: {name}: {error!r}")
    print(f"mqtt-sn-12: {len(cases) - failures} of {len(cases)} cases passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
