#!/usr/bin/env python3
"""The dashboard page (GET / of the admin listener) in headless Chromium (Debian's `chromium`,
driven by playwright with executable_path, as ws_browser_check.py does): the page loads with no
console error, shows the clients this script connected (paho-mqtt over TCP) and their count, a
retained message in its topic tree, and its own MQTT client (musqratt-proto built to
WebAssembly, over the broker's ws:// listener) exchanges messages with paho both ways. Saves a
screenshot.

Usage: dashboard_check.py HTTP_PORT TCP_PORT N_CLIENTS SCREENSHOT
Exit 0 when every check passes. Run by musqratt/tests/dashboard.rs."""

import queue
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import sync_playwright

TIMEOUT_MS = 10_000


def paho(port, client_id, inbox=None):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311)
    connected = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: connected.put(rc)
    if inbox is not None:
        client.on_message = lambda c, u, m: inbox.put((m.topic, m.payload.decode()))
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    rc = connected.get(timeout=10)
    assert rc == 0, f"{client_id}: CONNACK {rc}"
    return client


def main():
    http, tcp, n, screenshot = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    inbox = queue.Queue()
    clients = [paho(tcp, f"paho-{i}", inbox if i == 0 else None) for i in range(n)]
    subscribed = queue.Queue()
    clients[0].on_subscribe = lambda c, u, mid, codes, p: subscribed.put(codes)
    clients[0].subscribe("dash/from-page", qos=1)
    subscribed.get(timeout=10)
    clients[1].publish("dash/retained/a", "kept", qos=1, retain=True).wait_for_publish(timeout=5)

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{http}/")

        # The page's own two connections (tree and box) are clients too.
        want = str(n + 2)
        page.wait_for_function(
            f"document.getElementById('clients-count').textContent === '{want}'",
            timeout=TIMEOUT_MS)
        page.wait_for_function("window.dashboard.connected && window.dashboard.treeReady",
                               timeout=TIMEOUT_MS)
        for i in range(n):
            page.wait_for_selector(f"#clients td[title='paho-{i}']", timeout=TIMEOUT_MS)

        # The page subscribes; paho publishes; the page shows it.
        page.fill("#sub-filter", "dash/to-page")
        page.click("#sub-button")
        page.wait_for_selector("#sub-status:has-text('subscribed to dash/to-page')",
                               timeout=TIMEOUT_MS)
        clients[2 % n].publish("dash/to-page", "hello-from-paho", qos=1).wait_for_publish(5)
        page.wait_for_selector("#messages li:has-text('hello-from-paho')", timeout=TIMEOUT_MS)

        # The page publishes; paho receives it.
        page.fill("#pub-topic", "dash/from-page")
        page.fill("#pub-payload", "hello-from-page")
        page.click("#pub-button")
        topic, payload = inbox.get(timeout=10)
        assert (topic, payload) == ("dash/from-page", "hello-from-page"), (topic, payload)

        # The retained message in the tree; a few seconds of plots before the picture.
        page.wait_for_selector("#tree li[data-retained='dash/retained/a']", timeout=TIMEOUT_MS)
        for i in range(20):
            clients[1].publish("dash/load", f"m{i}", qos=i % 2)
            time.sleep(0.15)
        page.wait_for_function("window.dashboard.rates.length >= 3", timeout=TIMEOUT_MS)
        page.screenshot(path=screenshot, full_page=True)
        browser.close()

    for client in clients:
        client.loop_stop()
        client.disconnect()
    assert not errors, f"console errors: {errors}"
    print(f"dashboard: {n} clients shown, page <-> paho both ways, screenshot {screenshot}")


if __name__ == "__main__":
    main()
