#!/usr/bin/env bash
# musqratt's three runtimes side by side (issue 7 item 4): the same `musqratt` binary started
# with --runtime tokio, io-uring and blocking (2 threads/shards each) on three ports, each
# scenario run on the three in turn for ROUNDS rounds, plus the relay floor beside latency.
#
#   bench/runtimes.sh                          # ROUNDS=3 DURATION=3s
#   SCENARIOS="lat_q0" RUNTIMES="tokio blocking" bench/runtimes.sh
#
#   VARIANTS="base=/tmp/musqratt-old new=/tmp/musqratt-new" bench/runtimes.sh   # A/B of two builds
#                                               (tokio runtime, or RUNTIME=...; labels as given)
# Results: bench/results/runtimes-<time>.jsonl (label = musqratt-<runtime>, or the variant's
# label) and a summary (.md).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
SCENARIOS=${SCENARIOS:-"lat_q0 tp_q0_1x1 tp_q1_1x1"}
RUNTIMES=${RUNTIMES:-"tokio io-uring blocking"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
TARGET=$CARGO_TARGET_DIR/release
MUSQRATT=${MUSQRATT:-$TARGET/musqratt}
BENCH=$TARGET/musqratt-bench
RELAY_PORT=27840
ulimit -n "$(ulimit -Hn)"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p musqratt-bench -p musqratt >&2

mkdir -p bench/results
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-bench/results/${PREFIX:-runtimes}-$STAMP.jsonl}
LOGS=$(mktemp -d)
: >"$OUT"
declare -A PID PORT BIN RT LABEL
port=27841
if [ -n "${VARIANTS:-}" ]; then
    NAMES=""
    for v in $VARIANTS; do
        n=${v%%=*}; NAMES="$NAMES $n"; BIN[$n]=${v#*=}; RT[$n]=${RUNTIME:-tokio}; LABEL[$n]=$n
    done
else
    NAMES=$RUNTIMES
    for r in $RUNTIMES; do BIN[$r]=$MUSQRATT; RT[$r]=$r; LABEL[$r]=musqratt-$r; done
fi
for r in $NAMES; do PORT[$r]=$port; port=$((port + 1)); done

# shellcheck source=bench/lib.sh
. bench/lib.sh
start() {
    for r in $NAMES; do
        "${BIN[$r]}" broker --runtime "${RT[$r]}" --threads 2 --log-level warn \
            --listen "mqtt://127.0.0.1:${PORT[$r]}" >"$LOGS/$r.log" 2>&1 &
        PID[$r]=$!
    done
    "$BENCH" relay --listen "127.0.0.1:$RELAY_PORT" 2>"$LOGS/relay.log" &
    PID[relay]=$!
    for r in $NAMES; do wait_port "${PORT[$r]}"; done
    wait_port $RELAY_PORT
}
stop() {
    for r in $NAMES relay; do
        if [ -n "${PID[$r]:-}" ]; then
            kill "${PID[$r]}" 2>/dev/null || true
            wait "${PID[$r]}" 2>/dev/null || true
            PID[$r]=
        fi
    done
}
trap stop EXIT

run() {
    local case=$1 label=$2 round=$3
    shift 3
    local line
    if line=$("$BENCH" "$@" --json --label "$label" --duration "$DURATION" --warmup "$WARMUP" 2>>"$LOGS/bench.err"); then
        echo "$line" | jq -c --arg case "$case" --argjson round "$round" '. + {case: $case, round: $round}' >>"$OUT"
        echo "  $case $label: $(echo "$line" | jq -c '.results | del(.latency_us.cdf) | {deliveries_per_s, p50: .latency_us.p50, p99: .latency_us.p99, lost, rss_per_conn_bytes, connect_all_s}')" >&2
    else
        echo "  $case $label: FAILED (see $LOGS/bench.err)" >&2
        jq -nc --arg case "$case" --arg broker "$label" --argjson round "$round" \
            '{case: $case, broker: $broker, round: $round, error: "run failed"}' >>"$OUT"
    fi
}
scenario_args() {
    case $1 in
        lat_q0) echo "latency --qos 0 --rate 10000 --payload 64" ;;
        tp_q0_1x1) echo "throughput --qos 0 --publishers 1 --subscribers 1" ;;
        tp_q1_1x1) echo "throughput --qos 1 --publishers 1 --subscribers 1" ;;
        tp_q1_4x2) echo "throughput --qos 1 --publishers 4 --subscribers 2" ;;
        fan_q0_50) echo "fanout --qos 0 --subscribers 50" ;;
        conns) echo "conns --connections ${CONNS:-10000} --parallel 128 --hold 2s" ;;
        *) echo "unknown scenario $1" >&2; exit 1 ;;
    esac
}

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    start
    sleep 0.5
    for s in $SCENARIOS; do
        for r in $NAMES; do
            extra=()
            [ "$s" = conns ] && extra=(--pid "${PID[$r]}")
            # shellcheck disable=SC2046
            run "$s" "${LABEL[$r]}" "$round" $(scenario_args "$s") --url "mqtt://127.0.0.1:${PORT[$r]}" "${extra[@]}"
        done
        if [ "$s" = lat_q0 ]; then
            run floor_lat relay "$round" $(scenario_args lat_q0) --url "mqtt://127.0.0.1:$RELAY_PORT"
        fi
    done
    stop
done
python3 bench/summarize_runtimes.py "$OUT" | tee "${OUT%.jsonl}.md"
echo "results: $OUT" >&2
