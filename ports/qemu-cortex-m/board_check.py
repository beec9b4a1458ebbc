#!/usr/bin/env python3
"""What only the bare-metal board has to prove, through real sockets at HOST PORT (QEMU's
forwarded port): as many concurrent clients as it has sockets, every one receiving what one of
them publishes at QoS 0, 1 and 2; the next client refused; a socket freed by a disconnect
serving a new client; and a silent client dropped by the keep-alive timer, which only the
board's clock can fire. SOCKETS is the board's socket count (default 8). Exit 0 when every case
passes."""

import queue
import socket
import struct
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 10.0
BURST = 500
# Messages per burst: under the engine's per-session queue bound on the board (32).
BATCH = 25


def connect(host, port, client_id, protocol=mqtt.MQTTv311, timeout=TIMEOUT):
    """A connected paho client with a queue of what it receives."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    connected, received, subscribed = queue.Queue(), queue.Queue(), queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    c.on_message = lambda _c, _u, msg: received.put(msg)
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: subscribed.put(codes)
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        reason = connected.get(timeout=timeout)
    except queue.Empty:
        c.loop_stop()
        raise
    if reason.is_failure:
        raise RuntimeError(f"{client_id}: CONNACK refused: {reason}")
    c.received, c.subscribed = received, subscribed
    return c


def close(clients):
    for c in clients:
        c.disconnect()
        c.loop_stop()


def raw_connect(host, port, client_id, keepalive):
    """A plain-socket MQTT 3.1.1 CONNECT; returns the socket and the broker's first bytes (b''
    when the connection was closed instead of answered)."""
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", keepalive)
    payload = struct.pack(">H", len(cid)) + cid
    body = variable + payload
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    try:
        s.sendall(bytes([0x10, len(body)]) + body)
        first = s.recv(4)
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        first = b""
    return s, first


def all_receive(host, port, sockets):
    """SOCKETS clients at once (3.1.1 and 5.0 alternately) subscribe to one topic; the first
    publishes at QoS 0, 1 and 2; every one gets each message at its QoS (MQTT-3.3.5-1: a
    matching subscription gets a copy)."""
    topic = f"bm/all/{time.time_ns()}"
    clients = []
    try:
        for i in range(sockets):
            protocol = mqtt.MQTTv311 if i % 2 == 0 else mqtt.MQTTv5
            clients.append(connect(host, port, f"bm-all-{i}", protocol))
        for c in clients:
            c.subscribe(topic, qos=2)
            codes = c.subscribed.get(timeout=TIMEOUT)
            if any(code.is_failure for code in codes):
                raise RuntimeError(f"SUBACK {codes}")
        for qos in (0, 1, 2):
            info = clients[0].publish(topic, f"to all at {qos}".encode(), qos=qos)
            info.wait_for_publish(timeout=TIMEOUT)
            for i, c in enumerate(clients):
                msg = c.received.get(timeout=TIMEOUT)
                if msg.payload != f"to all at {qos}".encode() or msg.qos != qos:
                    raise RuntimeError(f"client {i} got {msg.payload!r} QoS {msg.qos}")
        # Every socket is taken: the next client is refused (the board RSTs its SYN; QEMU's
        # forwarder had accepted the host side, and now closes it).
        s, first = raw_connect(host, port, "bm-one-too-many", 30)
        s.close()
        if first:
            raise RuntimeError(f"client {sockets + 1} of {sockets} sockets was answered: {first!r}")
        # One leaves; its socket serves a newcomer (after the TCP close, so retry briefly).
        close(clients[-1:])
        clients.pop()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                clients.append(connect(host, port, "bm-newcomer", timeout=2.0))
                break
            except (RuntimeError, OSError, queue.Empty):
                if time.monotonic() > deadline:
                    raise RuntimeError("no socket came back after a disconnect") from None
                time.sleep(0.2)
    finally:
        close(clients)


def burst(host, port, _sockets):
    """BURST QoS 1 messages, published back to back in bursts of BATCH (paho keeps up to 20 in
    flight), reach a subscriber all and in order (MQTT 4.6: ordered per topic for QoS 1): the
    board's socket buffers fill and drain with full-size frames. A burst is received before the
    next is sent, so the engine's per-session queue bound (32 messages, which drops what goes
    beyond it) is never reached however slowly this host's subscriber thread runs: a slow
    runner (CI) once lost messages to it when all 500 went at once."""
    topic = f"bm/burst/{time.time_ns()}"
    sub = connect(host, port, "bm-burst-sub")
    pub = connect(host, port, "bm-burst-pub")
    try:
        sub.subscribe(topic, qos=1)
        sub.subscribed.get(timeout=TIMEOUT)
        got = []
        for start in range(0, BURST, BATCH):
            batch = range(start, min(start + BATCH, BURST))
            infos = [pub.publish(topic, f"{i:04}".encode() * 16, qos=1) for i in batch]
            for info in infos:
                info.wait_for_publish(timeout=TIMEOUT)
            got += [sub.received.get(timeout=TIMEOUT).payload[:4] for _ in batch]
        want = [f"{i:04}".encode() for i in range(BURST)]
        if got != want:
            missing = sorted(set(want) - set(got))
            raise RuntimeError(f"out of order or lost: first missing {missing[:5]}")
    finally:
        close([sub, pub])


def heap_guard(host, port, _sockets):
    """A client that fills the heap with retained messages (which the engine does not bound)
    is disconnected before an allocation fails: the board stays up. A client connected before
    then clears them, and new clients are served again."""
    admin = connect(host, port, "bm-admin")
    flooder = connect(host, port, "bm-flooder")
    clients = [admin]
    payload = b"r" * 4000
    filled = 0
    try:
        for i in range(40):
            info = flooder.publish(f"bm/fill/{i}", payload, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=5)
            except RuntimeError:
                break
            if not info.is_published():
                break
            filled += 1
        else:
            raise RuntimeError("40 retained 4 KB messages fit a 64 KiB heap: nothing was tested")
        close([flooder])
        for i in range(filled + 1):
            info = admin.publish(f"bm/fill/{i}", b"", qos=1, retain=True)
            info.wait_for_publish(timeout=TIMEOUT)
            if not info.is_published():
                raise RuntimeError(f"clearing bm/fill/{i} failed")
        late = connect(host, port, "bm-after-fill", timeout=TIMEOUT)
        clients.append(late)
        late.subscribe("bm/fill/#", qos=1)
        late.subscribed.get(timeout=TIMEOUT)
        try:
            msg = late.received.get(timeout=1.0)
            raise RuntimeError(f"a cleared retained message came back: {msg.topic}")
        except queue.Empty:
            pass
    finally:
        close(clients)


def keep_alive(host, port, _sockets):
    """A client with Keep Alive 1 s that sends nothing more is disconnected by the broker
    within one and a half times that (MQTT-3.1.2-24): the board's clock fires it."""
    s, first = raw_connect(host, port, "bm-silent", 1)
    try:
        if first[:2] != b"\x20\x02":
            raise RuntimeError(f"no CONNACK: {first!r}")
        s.settimeout(TIMEOUT)
        try:
            rest = s.recv(16)
        except ConnectionResetError:
            rest = b""
        if rest:
            raise RuntimeError(f"expected the connection closed, got {rest!r}")
    finally:
        s.close()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: board_check.py HOST PORT [SOCKETS]")
    host, port = sys.argv[1], int(sys.argv[2])
    sockets = int(sys.argv[3]) if len(sys.argv) == 4 else 8
    failures = 0
    cases = (
        (f"{sockets} concurrent clients, QoS 0/1/2 fan-out, refusal, reuse", all_receive),
        (f"{BURST} QoS 1 messages back to back in bursts of {BATCH}, all and in order", burst),
        ("heap guard: a retained flood closes its client, not the board", heap_guard),
        ("keep-alive timeout closes a silent client", keep_alive),
    )
    for name, case in cases:
        try:
            case(host, port, sockets)
            print(f"ok   board: {name}")
        except Exception as e:  # noqa: BLE001 (report every case)
            print(f"FAIL board: {name}: {e!r}")
            failures += 1
    if failures:
        sys.exit(f"board: {failures} case(s) failed")
    print(f"board: all {len(cases)} cases passed")


if __name__ == "__main__":
    main()
