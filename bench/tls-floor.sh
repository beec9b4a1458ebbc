#!/usr/bin/env bash
# TLS latency against the floor of a TLS hop (issue 15): musqratt over mqtt:// and mqtts://
# next to the bench's relay over TCP and over TLS (`relay --tls-cert`, the broker's own TLS
# layer, no MQTT parsing), in alternating rounds; QoS 0 (and QoS 1 for musqratt), 1 -> 1,
# 10,000 msg/s, 64 B.
#
#   ROUNDS=5 DURATION=4s bench/tls-floor.sh
#
# A throwaway CA and server certificate are made with openssl in a temporary directory. Every
# run reports the rest of the machine's CPU use (`other_cpu_cores`): keep it near 0. Results:
# bench/results/tls-floor-<time>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4s}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -p musqratt-bench -p musqratt >&2
BENCH=$CARGO_TARGET_DIR/release/musqratt-bench
BROKER=$CARGO_TARGET_DIR/release/musqratt
WORK=$(mktemp -d)
OUT=bench/results/tls-floor-$(date +%Y%m%d-%H%M%S).jsonl
mkdir -p bench/results
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/san"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/san" -out "$WORK/server.pem" 2>/dev/null
cat >"$WORK/musqratt.toml" <<TOML
listeners = ["mqtt://127.0.0.1:31881", "mqtts://127.0.0.1:38881"]
[tls]
cert_file = "$WORK/server.pem"
key_file = "$WORK/server.key"
TOML

for round in $(seq "$ROUNDS"); do
    "$BENCH" relay --listen 127.0.0.1:31883 >/dev/null 2>&1 &
    relay=$!
    "$BENCH" relay --listen 127.0.0.1:38883 --tls-cert "$WORK/server.pem" \
        --tls-key "$WORK/server.key" >/dev/null 2>&1 &
    tls_relay=$!
    "$BROKER" broker --config "$WORK/musqratt.toml" --log-level warn >/dev/null 2>&1 &
    broker=$!
    sleep 1
    for qos in 0 1; do
        for run in "relay mqtt://127.0.0.1:31883 $relay" "relay mqtts://127.0.0.1:38883 $tls_relay" \
            "musqratt mqtt://127.0.0.1:31881 $broker" "musqratt mqtts://127.0.0.1:38881 $broker"; do
            read -r who url pid <<<"$run"
            # The relay grants QoS 0 only.
            [ "$who" = relay ] && [ "$qos" = 1 ] && continue
            "$BENCH" latency --qos "$qos" --rate 10000 --url "$url" --cafile "$WORK/ca.pem" \
                --pid "$pid" --json --label "$who" --duration "$DURATION" --warmup 1s |
                jq -c --arg url "$url" --argjson qos "$qos" --argjson round "$round" \
                    '. + {url: $url, qos: $qos, round: $round}' | tee -a "$OUT"
        done
    done
    kill "$relay" "$tls_relay" "$broker"
    wait 2>/dev/null || true
done
echo "results: $OUT" >&2
