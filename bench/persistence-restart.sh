#!/usr/bin/env bash
# Restart with a large backlog (issue 16 item 5): a store holding SESSIONS offline durable
# sessions with PER_SESSION queued QoS 1 messages each is made through the store API, then
# `musqratt broker` starts on it; measured: the time from exec until a new client gets its
# CONNACK (the broker serves), the time until it answers a PINGREQ, the store's size, and the
# broker's peak RSS (VmHWM) then and after one backlogged session is drained.
#
#   bench/persistence-restart.sh MUSQRATT FILL_STORE OUT.jsonl
#
# MUSQRATT: a release `musqratt`; FILL_STORE: the release `fill_store` example of
# musqratt-store (cargo build --release -p musqratt -p musqratt-store --example fill_store).
# Environment: SESSIONS (1000), PER_SESSION (1000), PAYLOAD (100 bytes), RUNTIMES ("tokio
# io-uring blocking"), THREADS (2), ROUNDS (3). Needs python3. The issue's target: serving
# within 2 s and VmHWM under 256 MiB with 1,000,000 messages (the defaults).
set -eu
BIN=$1; FILL=$2; OUT=$3
SESSIONS=${SESSIONS:-1000}; PER_SESSION=${PER_SESSION:-1000}; PAYLOAD=${PAYLOAD:-100}
RUNTIMES=${RUNTIMES:-tokio io-uring blocking}; THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-3}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
: > "$OUT"
"$FILL" "$dir/seed.db" "$SESSIONS" "$PER_SESSION" "$PAYLOAD" >&2
store_bytes=$(stat -c %s "$dir/seed.db")
port=28950
for round in $(seq 1 "$ROUNDS"); do
  for rt in $RUNTIMES; do
    port=$((port+1))
    # A fresh copy each run: a run drains one session.
    cp "$dir/seed.db" "$dir/store.db"
    rm -f "$dir/store.db-wal"
    if [ -e "$dir/seed.db-wal" ]; then cp "$dir/seed.db-wal" "$dir/store.db-wal"; fi
    printf 'threads = %s\nlisteners = ["mqtt://127.0.0.1:%s"]\n\n[persistence]\npath = "%s"\nfsync = "never"\n' \
      "$THREADS" "$port" "$dir/store.db" > "$dir/b.toml"
    python3 - "$BIN" "$dir/b.toml" "$rt" "$port" "$round" "$SESSIONS" "$PER_SESSION" "$store_bytes" <<'PY' | tee -a "$OUT" >&2
import json, socket, struct, subprocess, sys, time
bin_, config, rt, port, rnd, sessions, per, store_bytes = sys.argv[1:]
port, per = int(port), int(per)

def hwm(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])

def connect_packet(cid, clean):
    body = b"\x00\x04MQTT\x04" + bytes([0x02 if clean else 0x00]) + b"\x00\x00"
    body += struct.pack(">H", len(cid)) + cid.encode()
    return bytes([0x10, len(body)]) + body

def read_packet(s):
    head = s.recv(1)
    if not head:
        raise EOFError
    length, shift = 0, 0
    while True:
        b = s.recv(1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    data = b""
    while len(data) < length:
        chunk = s.recv(length - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return head[0], data

t0 = time.monotonic()
broker = subprocess.Popen([bin_, "broker", "--runtime", rt, "--log-level", "warn", "--config", config],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            s.sendall(connect_packet("bench-new-client", True))
            kind, _ = read_packet(s)
            assert kind == 0x20
            break
        except (ConnectionRefusedError, EOFError, ConnectionResetError):
            if broker.poll() is not None:
                sys.exit(f"broker exited: {broker.returncode}")
            time.sleep(0.005)
    connack_s = time.monotonic() - t0
    s.sendall(b"\xc0\x00")
    kind, _ = read_packet(s)
    assert kind == 0xD0
    ping_s = time.monotonic() - t0
    hwm_start = hwm(broker.pid)
    # Drain one backlogged session, in order, acknowledging each message.
    d = socket.create_connection(("127.0.0.1", port), timeout=60)
    d.sendall(connect_packet("fill-0", False))
    kind, _ = read_packet(d)
    assert kind == 0x20
    t_drain = time.monotonic()
    for k in range(per):
        kind, data = read_packet(d)
        assert kind >> 4 == 3, kind
        tlen = struct.unpack(">H", data[:2])[0]
        pid = data[2 + tlen:4 + tlen]
        payload = data[4 + tlen:]
        assert payload.split(b" ", 1)[0] == str(k).encode(), (k, payload[:20])
        d.sendall(b"\x40\x02" + pid)
    drain_s = time.monotonic() - t_drain
    print(json.dumps({"runtime": rt, "round": int(rnd), "sessions": int(sessions), "per_session": per,
                      "store_bytes": int(store_bytes), "connack_s": round(connack_s, 3),
                      "pingresp_s": round(ping_s, 3), "hwm_kb_at_start": hwm_start,
                      "drain_one_session_s": round(drain_s, 3), "hwm_kb_after_drain": hwm(broker.pid)}))
finally:
    broker.kill()
    broker.wait()
PY
  done
done
