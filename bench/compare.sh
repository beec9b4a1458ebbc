#!/usr/bin/env bash
# Side by side: musqratt, Mosquitto and rumqttd on 127.0.0.1, each scenario run on the three
# brokers in turn (A B C, A B C, ...) for ROUNDS rounds, then medians and ratios.
#
#   bench/compare.sh                  # all scenarios, 3 rounds
#   ROUNDS=5 DURATION=10s bench/compare.sh
#   SCENARIOS="lat_q0_same lat_q0_diff tp_q1_1x1" BROKERS="musqratt mosquitto" bench/compare.sh
#
# Latency cases come in pairs: `_same` with the publisher and subscriber on one musqratt shard,
# `_diff` on two (client ids chosen so; see `latency --placement`), because a hop between
# shards is a large part of a 10k msg/s latency and which one a run gets must not be luck.
# `lat_q0` is an alias of `lat_q0_diff`. Every run reports the CPU use of the rest of the
# machine over its measured window (`other_cpu_cores`); summarize.py drops the rounds of a case
# where it exceeded QUIET_MAX cores (default 0.05) for any broker.
#
# Needs: mosquitto (Debian package), python3, jq; rumqttd (`cargo install rumqttd`, without
# --locked) unless BROKERS leaves it out (skipped with a warning when not installed). Results:
# one JSON object per run in bench/results/<time>.jsonl, summary printed and written beside it
# (.md).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-10000}
# How long `conns` holds its connections idle before reading RSS: long enough for musqratt's
# hibernation (5-10 s of silence) and jemalloc's purge of the pages it frees (~10 s decay).
HOLD=${HOLD:-30s}
SCENARIOS=${SCENARIOS:-"conns lat_q0_same lat_q0_diff lat_q1_same lat_q1_diff tp_q0_1x1 tp_q1_1x1 tp_q1_4x2 fan_q0_50"}
BROKERS=${BROKERS:-"musqratt mosquitto rumqttd"}
export QUIET_MAX=${QUIET_MAX:-0.05}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
TARGET=$CARGO_TARGET_DIR/release

MUSQRATT_PORT=27831
MOSQUITTO_PORT=27832
RUMQTTD_PORT=27833 # also in bench/rumqttd.toml
RELAY_PORT=27830   # the floor: `musqratt-bench relay`, a process of its own like the brokers

# ---- how musqratt is started --------------------------------------------------------------
# The `musqratt` binary with 2 shards (one per core here); MUSQRATT_RUNTIME picks the runtime
# (tokio, io-uring, blocking). Started directly so that $! is the broker's pid for `--pid`.
# The latency cases compute the placement for SHARDS shards: keep it equal to --threads.
MUSQRATT_RUNTIME=${MUSQRATT_RUNTIME:-tokio}
SHARDS=${SHARDS:-2}
MUSQRATT_CMD=${MUSQRATT_CMD:-"$TARGET/musqratt broker --runtime $MUSQRATT_RUNTIME --threads $SHARDS --log-level warn --listen mqtt://127.0.0.1:$MUSQRATT_PORT"}
# ---------------------------------------------------------------------------------------------

# The bench and the brokers all need more than the default 1024 open files for 10k connections.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS + 100)) ]; then
    echo "warning: ulimit -n is $(ulimit -n); conns with $CONNS connections will fail" >&2
fi

cargo build --release -p musqratt-bench -p musqratt >&2
BENCH=$TARGET/musqratt-bench
wanted=$BROKERS
BROKERS=
for b in $wanted; do
    case $b in
        musqratt) ;;
        mosquitto) command -v mosquitto >/dev/null || { echo "mosquitto not installed" >&2; exit 1; } ;;
        rumqttd)
            if ! command -v rumqttd >/dev/null; then
                echo "warning: rumqttd not installed (cargo install rumqttd): skipped" >&2
                continue
            fi
            ;;
        *) echo "unknown broker $b (musqratt, mosquitto, rumqttd)" >&2; exit 1 ;;
    esac
    BROKERS="$BROKERS $b"
done
[ -n "$BROKERS" ] || { echo "no broker to run" >&2; exit 1; }

mkdir -p bench/results
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=bench/results/$STAMP.jsonl
LOGS=$(mktemp -d)
: >"$OUT"

declare -A PID PORT
PORT[musqratt]=$MUSQRATT_PORT
PORT[mosquitto]=$MOSQUITTO_PORT
PORT[rumqttd]=$RUMQTTD_PORT
PORT[relay]=$RELAY_PORT

# shellcheck source=bench/lib.sh
. bench/lib.sh

start_brokers() {
    for b in $BROKERS; do
        case $b in
            musqratt) $MUSQRATT_CMD >"$LOGS/musqratt.log" 2>&1 & ;;
            mosquitto) mosquitto -c bench/mosquitto.conf >"$LOGS/mosquitto.log" 2>&1 & ;;
            rumqttd) rumqttd -q -c bench/rumqttd.toml >"$LOGS/rumqttd.log" 2>&1 & ;;
        esac
        PID[$b]=$!
    done
    "$BENCH" relay --listen "127.0.0.1:$RELAY_PORT" 2>"$LOGS/relay.log" &
    PID[relay]=$!
    for b in $BROKERS relay; do wait_port "${PORT[$b]}"; done
}

stop_brokers() {
    for b in $BROKERS relay; do
        if [ -n "${PID[$b]:-}" ]; then
            kill "${PID[$b]}" 2>/dev/null || true
            wait "${PID[$b]}" 2>/dev/null || true
            PID[$b]=
        fi
    done
}
trap stop_brokers EXIT

# One bench run; its JSON line gets "case" and "round" added. A failed run is recorded too.
run() {
    local case=$1 label=$2 round=$3
    shift 3
    local line
    if line=$("$BENCH" "$@" --json --label "$label" --duration "$DURATION" --warmup "$WARMUP" 2>>"$LOGS/bench.err"); then
        echo "$line" | jq -c --arg case "$case" --argjson round "$round" '. + {case: $case, round: $round}' >>"$OUT"
        echo "  $case $label: $(echo "$line" | jq -c '.results | del(.latency_us.cdf) | {deliveries_per_s, latency_us, lost, rss_per_conn_bytes, connect_all_s, connected, other_cpu_cores, broker_cpu_cores} | with_entries(select(.value != null))')" >&2
    else
        echo "  $case $label: FAILED (see $LOGS/bench.err)" >&2
        jq -nc --arg case "$case" --arg broker "$label" --argjson round "$round" \
            '{case: $case, broker: $broker, round: $round, error: "run failed"}' >>"$OUT"
    fi
}

scenario_args() {
    case $1 in
        lat_q[01]_same) echo "latency --qos ${1:5:1} --rate 10000 --payload 64 --placement same --shards $SHARDS" ;;
        lat_q[01]_diff) echo "latency --qos ${1:5:1} --rate 10000 --payload 64 --placement different --shards $SHARDS" ;;
        # The relay speaks QoS 0 only (it never acknowledges), so one floor serves both QoS.
        floor_lat) echo "latency --qos 0 --rate 10000 --payload 64" ;;
        tp_q0_1x1) echo "throughput --qos 0 --publishers 1 --subscribers 1" ;;
        tp_q1_1x1) echo "throughput --qos 1 --publishers 1 --subscribers 1" ;;
        tp_q1_4x2) echo "throughput --qos 1 --publishers 4 --subscribers 2" ;;
        fan_q0_50) echo "fanout --qos 0 --subscribers 50" ;;
        conns) echo "conns --connections $CONNS --parallel 128 --hold $HOLD" ;;
        *) echo "unknown scenario $1" >&2; exit 1 ;;
    esac
}

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    # Fresh brokers each round, so `conns` (first) measures RSS from a clean start.
    start_brokers
    sleep 0.5
    floor_done=
    for s in $SCENARIOS; do
        [ "$s" = lat_q0 ] && s=lat_q0_diff
        for b in $BROKERS; do
            # shellcheck disable=SC2046
            run "$s" "$b" "$round" $(scenario_args "$s") --url "mqtt://127.0.0.1:${PORT[$b]}" --pid "${PID[$b]}"
        done
        if [[ $s == lat_* && -z $floor_done ]]; then
            floor_done=1
            # shellcheck disable=SC2046
            run floor_lat relay "$round" $(scenario_args floor_lat) --url "mqtt://127.0.0.1:$RELAY_PORT" --pid "${PID[relay]}"
        fi
        if [ "$s" = tp_q0_1x1 ]; then
            # shellcheck disable=SC2046
            run floor_tp relay "$round" $(scenario_args tp_q0_1x1) --url "mqtt://127.0.0.1:$RELAY_PORT" --pid "${PID[relay]}"
        fi
    done
    stop_brokers
done

python3 bench/summarize.py --quiet-max "$QUIET_MAX" "$OUT" | tee "${OUT%.jsonl}.md"
echo "results: $OUT" >&2
