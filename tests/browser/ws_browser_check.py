#!/usr/bin/env python3
"""MQTT over WebSocket from a real browser: MQTT.js (npm `mqtt`, its browser bundle) in headless
Chromium (Debian's `chromium`, driven by the `playwright` package with executable_path; no
browser download) connects to a broker's ws:// and wss:// listeners, subscribes, publishes and
receives, and exchanges messages with paho-mqtt clients over plain TCP and over WebSocket
(`transport="websockets"`). The wss:// listener's certificate is made by the caller from a test
CA; the browser trusts it through `--ignore-certificate-errors-spki-list` with the SHA-256 of
the server key (Chromium's flag for pinning a test key), nothing else.

Usage: ws_browser_check.py TCP_PORT WS_PORT WSS_PORT SERVER_CERT_PEM [SCREENSHOT]
Exit 0 when every case passes. Run by musqratt/tests/websocket.rs."""

import base64
import os
import queue
import subprocess
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import sync_playwright

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLE = os.path.join(HERE, "node_modules", "mqtt", "dist", "mqtt.min.js")
TIMEOUT = 10.0

# Runs in the page: connects, subscribes to `sub`, publishes `count` messages to `pub`
# (QoS 1), and resolves with what it received on `sub` until `expect` messages came.
PAGE_SCRIPT = """
async ({url, id, sub, pub, count, expect, version}) => {
  const client = mqtt.connect(url, {clientId: id, protocolVersion: version,
                                    reconnectPeriod: 0, connectTimeout: 5000});
  const got = [];
  await new Promise((resolve, reject) => {
    client.on('connect', resolve);
    client.on('error', reject);
    setTimeout(() => reject(new Error('no CONNACK from ' + url)), 8000);
  });
  client.on('message', (topic, payload) => got.push(topic + '=' + payload.toString()));
  await client.subscribeAsync(sub, {qos: 1});
  for (let i = 0; i < count; i++) {
    await client.publishAsync(pub, 'from-browser-' + i, {qos: 1});
  }
  const deadline = Date.now() + 8000;
  while (got.length < expect && Date.now() < deadline) {
    await new Promise(r => setTimeout(r, 20));
  }
  await client.endAsync();
  return got;
}
"""


def spki_hash(cert_pem):
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium's flag wants."""
    pubkey = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", cert_pem],
                            check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pubkey,
                         check=True, capture_output=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der, check=True,
                            capture_output=True).stdout
    return base64.b64encode(digest).decode()


def paho(name, port, transport="tcp", version=mqtt.MQTTv5, on_message=None):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=version,
                    transport=transport)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
    received, connected, subscribed = queue.Queue(), queue.Queue(), queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)

    def message(client, _u, m):
        received.put((m.topic, m.payload.decode()))
        if on_message:
            on_message(client, m)

    c.on_message = message
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: subscribed.put(codes)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    reason = connected.get(timeout=TIMEOUT)
    if reason.is_failure:
        raise RuntimeError(f"{name}: CONNACK refused: {reason}")
    return c, received, subscribed


def browser_round(page, url, tag, peer_port, transport):
    """The page and a paho client (over `transport`) exchange 3 messages each way: the page
    subscribes, then publishes; the first message paho receives from it (so the page is
    subscribed by then) makes paho publish to the page."""
    sub, pub = f"browser/{tag}/in", f"browser/{tag}/out"

    def answer(client, m):
        if m.payload == b"from-browser-0":
            for i in range(3):
                client.publish(sub, f"to-browser-{i}", qos=1)

    peer, received, subscribed = paho(f"peer-{tag}", peer_port, transport, on_message=answer)
    peer.subscribe(pub, qos=1)
    subscribed.get(timeout=TIMEOUT)
    got = page.evaluate(PAGE_SCRIPT, {
        "url": url, "id": f"page-{tag}", "sub": sub, "pub": pub, "count": 3, "expect": 3,
        "version": 5,
    })
    want = [f"{sub}=to-browser-{i}" for i in range(3)]
    if got != want:
        raise RuntimeError(f"{url}: the page received {got}, expected {want}")
    from_page = [received.get(timeout=TIMEOUT) for _ in range(3)]
    if from_page != [(pub, f"from-browser-{i}") for i in range(3)]:
        raise RuntimeError(f"{url}: paho ({transport}) received {from_page}")
    peer.loop_stop()
    peer.disconnect()
    print(f"ok: MQTT.js in Chromium over {url} <-> paho over {transport}")


def main():
    tcp_port, ws_port, wss_port = (int(p) for p in sys.argv[1:4])
    cert = sys.argv[4]
    screenshot = sys.argv[5] if len(sys.argv) > 5 else None
    if not os.path.exists(BUNDLE):
        raise SystemExit(f"{BUNDLE} missing: run `npm ci` in {HERE}")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", f"--ignore-certificate-errors-spki-list={spki_hash(cert)}"],
        )
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_content("<!doctype html><title>musqratt ws test</title><body>MQTT.js</body>")
        page.add_script_tag(path=BUNDLE)
        browser_round(page, f"ws://127.0.0.1:{ws_port}/mqtt", "ws", tcp_port, "tcp")
        browser_round(page, f"wss://localhost:{wss_port}/mqtt", "wss", ws_port, "websockets")
        if screenshot:
            page.screenshot(path=screenshot)
        browser.close()
        if errors:
            raise RuntimeError(f"page errors: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
