#!/usr/bin/env python3
"""MQTT 5.0 enhanced authentication with SCRAM, client side, for musqratt/tests/scram.rs.

The SCRAM side is Python's `scramp` (an implementation independent of MusQraTT's); the MQTT
side is written here over a raw socket, because paho-mqtt's client has no API for the AUTH
exchange (§4.12).

    scram_client.py PORT USER PASSWORD [--reauth] [--method SCRAM-SHA-512] [--min-iterations N]

scramp refuses iteration counts below 4096 (RFC 7677 §4's SHOULD); Mosquitto 2.0's
`mosquitto_passwd` writes 101. `--min-iterations 101` lowers that policy (and nothing of the
arithmetic) for entries made by it.

Prints one line and exits 0 when the exchange went as the broker said:
    accepted server-final-verified [reauth-verified]
    refused 0xNN
Exits 1 with a message on anything unexpected (a server-final that scramp rejects included).
"""

import argparse
import socket
import sys

import scramp.core
from scramp import ScramClient, ScramException

CONNECT, CONNACK, AUTH = 1, 2, 15
AUTH_METHOD, AUTH_DATA = 0x15, 0x16


def varint(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text):
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def binary(data):
    return len(data).to_bytes(2, "big") + data


def properties(method, data):
    body = bytes([AUTH_METHOD]) + utf8(method) + bytes([AUTH_DATA]) + binary(data)
    return varint(len(body)) + body


def packet(kind, flags, body):
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def connect(method, data):
    # Protocol name, level 5, flags: clean start; keep alive 30 s; then properties, client id.
    variable = utf8("MQTT") + bytes([5, 0x02]) + (30).to_bytes(2, "big")
    return packet(CONNECT, 0, variable + properties(method, data) + utf8("scram-test"))


def auth(reason, method, data):
    return packet(AUTH, 0, bytes([reason]) + properties(method, data))


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("connection closed by the broker")
        out += chunk
    return out


def read_varint(read):
    value, shift = 0, 0
    while True:
        byte = read(1)[0]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value


def read_packet(sock):
    """(packet type, reason code, {property id: value}) of CONNACK, AUTH or DISCONNECT."""
    first = read_exact(sock, 1)[0]
    body = read_exact(sock, read_varint(lambda n: read_exact(sock, n)))
    kind = first >> 4
    at = 1 if kind == CONNACK else 0  # CONNACK: session present flags first
    reason = body[at] if len(body) > at else 0
    at += 1
    props = {}
    if len(body) > at:
        pos = [at]

        def take(n):
            chunk = body[pos[0] : pos[0] + n]
            pos[0] += n
            return chunk

        end = read_varint(take) + pos[0]
        while pos[0] < end:
            ident = take(1)[0]
            if ident in (AUTH_METHOD, AUTH_DATA, 0x1F, 0x12, 0x1A, 0x1C):
                size = int.from_bytes(take(2), "big")
                props[ident] = take(size)
            elif ident == 0x26:  # user property: two strings
                take(int.from_bytes(take(2), "big"))
                take(int.from_bytes(take(2), "big"))
            elif ident in (0x11, 0x27):
                take(4)
            elif ident in (0x21, 0x22, 0x13):
                take(2)
            elif ident == 0x0B:
                read_varint(take)
            else:
                take(1)
    return kind, reason, props


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def exchange(sock, method, user, password, first_packet):
    """Runs one SCRAM exchange; returns the final packet's (type, reason, properties) and the
    client, whose server-final is still to be checked."""
    client = ScramClient([method], user, password)
    sock.sendall(first_packet(client.get_client_first().encode()))
    kind, reason, props = read_packet(sock)
    if kind != AUTH:
        return (kind, reason, props), client
    if reason != 0x18 or props.get(AUTH_METHOD) != method.encode():
        fail(f"expected AUTH 0x18 with the method, got reason {reason:#04x} {props}")
    client.set_server_first(props[AUTH_DATA].decode())
    sock.sendall(auth(0x18, method, client.get_client_final().encode()))
    return read_packet(sock), client


def verify(client, props, method):
    if props.get(AUTH_METHOD) != method.encode():
        fail(f"no Authentication Method {method} in the final packet: {props}")
    if AUTH_DATA not in props:
        fail("no server-final (Authentication Data) in the final packet")
    try:
        client.set_server_final(props[AUTH_DATA].decode())
    except ScramException as error:
        fail(f"scramp rejects the server-final: {error}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--method", default="SCRAM-SHA-512")
    parser.add_argument("--reauth", action="store_true")
    parser.add_argument("--min-iterations", type=int)
    args = parser.parse_args()
    if args.min_iterations is not None:
        scramp.core.IterationCount.MIN_ITERATION_COUNT = args.min_iterations
    method = args.method
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    (kind, reason, props), client = exchange(
        sock, method, args.user, args.password, lambda data: connect(method, data)
    )
    if kind != CONNACK:
        fail(f"expected CONNACK, got packet type {kind}")
    if reason != 0:
        print(f"refused {reason:#04x}")
        return
    verify(client, props, method)
    words = ["accepted", "server-final-verified"]
    if args.reauth:
        # §4.12.1: re-authentication, AUTH 0x19 with a new client-first; it ends with AUTH 0x00.
        (kind, reason, props), client = exchange(
            sock, method, args.user, args.password, lambda data: auth(0x19, method, data)
        )
        if kind != AUTH or reason != 0:
            fail(f"re-authentication: packet type {kind} reason {reason:#04x}")
        verify(client, props, method)
        words.append("reauth-verified")
    sock.sendall(packet(14, 0, b""))  # DISCONNECT
    print(" ".join(words))


if __name__ == "__main__":
    main()
