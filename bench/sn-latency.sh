#!/usr/bin/env bash
# MQTT-SN latency side by side: musqratt's native MQTT-SN listener against the Eclipse Paho
# MQTT-SN gateway in front of Mosquitto, SN -> SN and SN -> MQTT, QoS 0, 64 B, alternating
# (musqratt, gateway, musqratt, gateway, ...) for ROUNDS rounds, then medians and ratios.
#
#   PAHO_GATEWAY=/path/to/MQTT-SNGateway bench/sn-latency.sh
#   ROUNDS=5 DURATION=5s RATE=1000 PAHO_GATEWAY=... bench/sn-latency.sh
#
# The gateway is not built here: build it yourself (docs/BENCHMARKS.md, "MQTT-SN latency", says
# how). Without PAHO_GATEWAY only musqratt is measured. Needs mosquitto, jq, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
RATE=${RATE:-10000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
TARGET=$CARGO_TARGET_DIR/release
MUSQRATT_MQTT=27841
MUSQRATT_SN=27842
MOSQUITTO_PORT=27843
GATEWAY_SN=27844

cargo build --release -p musqratt >&2
BIN=$TARGET/musqratt
mkdir -p bench/results
OUT=bench/results/sn-latency-$(date -u +%Y%m%d-%H%M%S).jsonl
LOGS=$(mktemp -d)
: >"$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$BIN" broker --threads 2 --log-level warn --listen "mqtt://127.0.0.1:$MUSQRATT_MQTT" \
    --listen "mqtt-sn://127.0.0.1:$MUSQRATT_SN" >"$LOGS/musqratt.log" 2>&1 &
PIDS+=($!)
SYSTEMS="musqratt"
if [ -n "${PAHO_GATEWAY:-}" ]; then
    sed "s/^listener .*/listener $MOSQUITTO_PORT 127.0.0.1/" bench/mosquitto.conf >"$LOGS/mosquitto.conf"
    mosquitto -c "$LOGS/mosquitto.conf" >"$LOGS/mosquitto.log" 2>&1 &
    PIDS+=($!)
    sleep 0.5
    # The gateway's own defaults, with its broker, its port and a long keep alive.
    cat >"$LOGS/gateway.conf" <<CONF
GatewayID=1
GatewayName=PahoGateway-bench
MaxNumberOfClients=30
KeepAlive=900
BrokerName=127.0.0.1
BrokerPortNo=$MOSQUITTO_PORT
BrokerSecurePortNo=8883
AggregatingGateway=NO
QoS-1=NO
Forwarder=NO
PredefinedTopic=NO
ClientAuthentication=NO
GatewayPortNo=$GATEWAY_SN
MulticastPortNo=$((GATEWAY_SN + 1))
MulticastIP=225.1.1.1
MulticastTTL=1
ShearedMemory=NO
CONF
    (cd "$LOGS" && setsid "$PAHO_GATEWAY" -f "$LOGS/gateway.conf" >"$LOGS/gateway.log" 2>&1 </dev/null) &
    PIDS+=($!)
    SYSTEMS="musqratt paho-gateway+mosquitto"
fi
sleep 1

run() { # CASE SYSTEM ROUND ARGS...
    local case=$1 system=$2 round=$3
    shift 3
    local line
    if line=$("$BIN" bench "$@" --json --label "$system" --duration "$DURATION" --warmup "$WARMUP" 2>>"$LOGS/bench.err"); then
        echo "$line" | jq -c --arg case "$case" --argjson round "$round" '. + {case: $case, round: $round}' >>"$OUT"
        echo "  $case $system: $(echo "$line" | jq -c '.results | {p50: .latency_us.p50, p99: .latency_us.p99, lost}')" >&2
    else
        echo "  $case $system: FAILED (see $LOGS/bench.err)" >&2
    fi
}

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for case in sn_sn sn_mqtt; do
        extra=()
        [ "$case" = sn_sn ] && extra=(--sn-sub)
        for system in $SYSTEMS; do
            if [ "$system" = musqratt ]; then
                mqtt=$MUSQRATT_MQTT sn=$MUSQRATT_SN
            else
                mqtt=$MOSQUITTO_PORT sn=$GATEWAY_SN
            fi
            run "$case" "$system" "$round" --url "mqtt://127.0.0.1:$mqtt" latency --qos 0 \
                --rate "$RATE" --payload 64 --sn "mqtt-sn://127.0.0.1:$sn" "${extra[@]}"
        done
    done
done

python3 - "$OUT" <<'PY' | tee "${OUT%.jsonl}.md"
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["case"], r["broker"])].append(r["results"])
titles = {"sn_sn": "SN -> SN", "sn_mqtt": "SN -> MQTT"}
print("| path | system | p50 µs | p90 µs | p99 µs | lost (median) | rounds | musqratt p50 / this |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for case in ("sn_sn", "sn_mqtt"):
    base = None
    for system in ("musqratt", "paho-gateway+mosquitto"):
        rs = runs.get((case, system))
        if not rs:
            continue
        med = lambda k: statistics.median(r["latency_us"][k] for r in rs)
        p50 = med("p50")
        base = p50 if system == "musqratt" else base
        lost = statistics.median(r["lost"] for r in rs)
        print(f"| {titles[case]} | {system} | {p50:.1f} | {med('p90'):.1f} | {med('p99'):.1f} | {lost:,.0f} | {len(rs)} | {base / p50:.2f}× |")
PY
