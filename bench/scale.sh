#!/usr/bin/env bash
# Scale curves (issue 19): how each broker's cost grows with the work. Each curve is swept over
# its sizes; each size runs on every broker in turn (musqratt with 1 shard, with 2, Mosquitto,
# rumqttd), each run on a freshly started broker, so that no run inherits another's memory.
#
#   bench/scale.sh                               # every curve, full sizes (hours; quiet machine)
#   SIZES=small bench/scale.sh                   # smoke sweep: 100/300/1k/3k, minutes
#   CURVES="subs_exact retained" BROKERS="musqratt-2 mosquitto" bench/scale.sh
#   SIZES="1000 5000" CURVES=conns bench/scale.sh  # explicit sizes for every curve chosen
#
# Curves (the size is the swept parameter; see docs/BENCHMARKS.md, "Scale curves"):
#   conns             N idle connections (128 connecting at a time): RSS/connection, connect time
#   subs_exact        N distinct exact filters over SUB_CLIENTS connections: SUBSCRIBE rate,
#   subs_wildcard     RSS/subscription, p50/p99 of a 1 -> 1 pair at PAIR_RATE msg/s meanwhile
#   fanout            1 -> N subscribers of one topic, unpaced, QoS 0: deliveries/s, loss
#   fanout_paced      the same paced at FANOUT_DELIVERIES deliveries/s in all: latency to the
#                     subscribers (max: the last one)
#   retained          N retained messages: RSS/message, time for a `#` subscriber to get them all
#   storm_clean       N clients connecting at once, Clean Session 1: time to all CONNACKs, p99
#   storm_persistent  the same with Clean Session 0 (a persistent session each)
#
# Brokers: musqratt-1 / musqratt-2 (`musqratt broker --threads 1|2`, a generated config with
# queue bounds raised so that nothing a curve sends is dropped by a bound rather than by
# capacity), mosquitto (Debian package, a generated config: listener on 127.0.0.1, anonymous,
# no persistence, max_queued_messages raised), rumqttd (~/.cargo/bin/rumqttd or on PATH,
# bench/rumqttd.toml with its port and max_connections rewritten; skipped with a warning when
# absent). Results: one JSON object per run in bench/results/scale-<time>.jsonl with `curve`,
# `size`, `broker` and `round` added; then bench/scale_plot.py writes the table, the fits and
# the plots beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

SIZES=${SIZES:-full}
ROUNDS=${ROUNDS:-1}
CURVES=${CURVES:-"conns subs_exact subs_wildcard fanout fanout_paced retained storm_clean storm_persistent"}
BROKERS=${BROKERS:-"musqratt-1 musqratt-2 mosquitto rumqttd"}
DURATION=${DURATION:-$([ "$SIZES" = small ] && echo 2s || echo 5s)} # subs' pair, fan-out
WARMUP=${WARMUP:-1s}
# How long `conns` holds its connections idle before reading RSS (musqratt hibernates idle
# connections after 5-10 s, jemalloc purges freed pages after ~10 s).
HOLD=${HOLD:-$([ "$SIZES" = small ] && echo 2s || echo 30s)}
SUB_CLIENTS=${SUB_CLIENTS:-10}
PAIR_RATE=${PAIR_RATE:-1000}
FANOUT_DELIVERIES=${FANOUT_DELIVERIES:-200000}
RUN_TIMEOUT=${RUN_TIMEOUT:-1200} # seconds: a run that hangs is recorded as failed
PLOT_DIR=${PLOT_DIR:-}            # where the PNGs go (default: beside the results)
# The build measured: release (what any figure must come from); PROFILE=dev only to smoke-test
# this script without the long optimized build.
PROFILE=${PROFILE:-release}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
TARGET=$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

sizes_of() { # CURVE -> its sizes
    if [ "$SIZES" != full ] && [ "$SIZES" != small ]; then
        echo "$SIZES"
        return
    fi
    case $SIZES:$1 in
        full:conns) echo "1000 10000 30000 100000" ;;
        full:subs_*) echo "10000 100000 300000 1000000" ;;
        full:fanout*) echo "1 10 100 1000 10000" ;;
        full:retained) echo "10000 100000 300000 1000000" ;;
        full:storm_*) echo "1000 3000 10000 30000" ;;
        small:fanout*) echo "1 10 100 300" ;;
        small:*) echo "100 300 1000 3000" ;;
    esac
}

curve_args() { # CURVE SIZE BROKER -> bench arguments
    local n=$2 shards=1
    [[ $3 == musqratt-* ]] && shards=${3#musqratt-}
    case $1 in
        conns) echo "conns --connections $n --parallel 128 --hold $HOLD" ;;
        subs_exact | subs_wildcard)
            echo "subs --filters $n --shape ${1#subs_} --clients $SUB_CLIENTS --rate $PAIR_RATE --shards $shards --hold 2s" ;;
        fanout) echo "fanout --subscribers $n --qos 0" ;;
        fanout_paced) echo "fanout --subscribers $n --qos 0 --rate $(( (FANOUT_DELIVERIES + n - 1) / n ))" ;;
        retained) echo "retained --topics $n --qos 1 --hold 2s --drain 5s" ;;
        storm_clean) echo "conns --connections $n --parallel 0 --clean true --hold 1s" ;;
        storm_persistent) echo "conns --connections $n --parallel 0 --clean false --hold 1s" ;;
        *) echo "unknown curve $1" >&2; exit 1 ;;
    esac
}

# Connections need file descriptors on both sides: raise the hard limit where allowed (root),
# then the soft one; brokers started from here inherit it.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
most=0 # the most connections a run opens
for c in $CURVES; do
    case $c in conns | storm_* | fanout*) ;; *) continue ;; esac
    for n in $(sizes_of "$c"); do
        if [ "$n" -gt "$most" ]; then most=$n; fi
    done
done
if [ "$(ulimit -n)" -lt $((most + 1000)) ]; then
    echo "warning: ulimit -n is $(ulimit -n), below the $most connections of the largest run" >&2
fi

cargo build --profile "$PROFILE" -p musqratt-bench -p musqratt >&2
BENCH=$TARGET/musqratt-bench
RUMQTTD=$(command -v rumqttd || echo "$HOME/.cargo/bin/rumqttd")
wanted=$BROKERS
BROKERS=
for b in $wanted; do
    case $b in
        musqratt-[0-9]*) ;;
        mosquitto) command -v mosquitto >/dev/null || { echo "mosquitto not installed" >&2; exit 1; } ;;
        rumqttd)
            if [ ! -x "$RUMQTTD" ]; then
                echo "warning: rumqttd not installed (cargo install rumqttd): skipped" >&2
                continue
            fi
            ;;
        *) echo "unknown broker $b (musqratt-N, mosquitto, rumqttd)" >&2; exit 1 ;;
    esac
    BROKERS="$BROKERS $b"
done
[ -n "$BROKERS" ] || { echo "no broker to run" >&2; exit 1; }

mkdir -p bench/results
OUT=bench/results/scale-$(date -u +%Y%m%d-%H%M%S).jsonl
WORK=$(mktemp -d)
: >"$OUT"
PORT=27871
PID=

# Generated configurations: queue bounds out of the way (a curve measures capacity, not a
# bound; the largest retained run queues 1M messages for one subscriber), nothing on disk.
cat >"$WORK/musqratt.toml" <<EOF
listeners = ["mqtt://127.0.0.1:$PORT"]
max_queued_messages = 4000000
max_queued_bytes = 4294967296
EOF
cat >"$WORK/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 4000000
log_dest stderr
log_type error
log_type warning
EOF
sed -e "s/^listen = .*/listen = \"127.0.0.1:$PORT\"/" \
    -e "s/^max_connections = .*/max_connections = 150000/" bench/rumqttd.toml >"$WORK/rumqttd.toml"

start_broker() { # BROKER: starts it fresh on PORT, sets PID
    case $1 in
        musqratt-*)
            "$TARGET/musqratt" broker --config "$WORK/musqratt.toml" --threads "${1#musqratt-}" \
                --log-level warn >>"$WORK/$1.log" 2>&1 &
            ;;
        mosquitto) mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 & ;;
        rumqttd) "$RUMQTTD" -q -c "$WORK/rumqttd.toml" >>"$WORK/rumqttd.log" 2>&1 & ;;
    esac
    PID=$!
    wait_port "$PORT" && return 0
    echo "$1: see its log, $WORK/$1.log" >&2
    return 1
}

stop_broker() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=
    fi
}
trap 'stop_broker; rm -rf "$WORK"' EXIT

# What ran where, once: the plot script prints it above the table.
jq -nc --arg cpus "$(nproc)" --arg mosquitto "$(mosquitto -h 2>/dev/null | head -1 || true)" \
    --arg rumqttd "$("$RUMQTTD" --version 2>/dev/null || true)" --arg commit "$(git rev-parse --short HEAD)" \
    --arg sizes "$SIZES" --arg profile "$PROFILE" \
    '{meta: true, cpus: $cpus, mosquitto: $mosquitto, rumqttd: $rumqttd, commit: $commit, sizes: $sizes, profile: $profile}' >>"$OUT"

run() { # ROUND CURVE SIZE BROKER
    local round=$1 curve=$2 size=$3 broker=$4 line
    if ! start_broker "$broker"; then
        jq -nc --arg curve "$curve" --argjson size "$size" --arg broker "$broker" --argjson round "$round" \
            '{curve: $curve, size: $size, broker: $broker, round: $round, error: "broker did not start"}' >>"$OUT"
        stop_broker
        return
    fi
    # shellcheck disable=SC2046
    if line=$(timeout "$RUN_TIMEOUT" "$BENCH" $(curve_args "$curve" "$size" "$broker") --url "mqtt://127.0.0.1:$PORT" \
        --pid "$PID" --json --label "$broker" --duration "$DURATION" --warmup "$WARMUP" 2>>"$WORK/bench.err"); then
        echo "$line" | jq -c --arg curve "$curve" --argjson size "$size" --argjson round "$round" \
            '. + {curve: $curve, size: $size, round: $round}' >>"$OUT"
        echo "  $curve $size $broker: $(echo "$line" | jq -c '.results | del(.latency_us.cdf, .connect_us.min, .connect_us.p90, .connect_us.p99_9, .latency_us.min, .latency_us.p90, .latency_us.p99_9)')" >&2
    else
        echo "  $curve $size $broker: FAILED ($(tail -1 "$WORK/bench.err"))" >&2
        jq -nc --arg curve "$curve" --argjson size "$size" --arg broker "$broker" --argjson round "$round" \
            --arg error "$(tail -1 "$WORK/bench.err")" \
            '{curve: $curve, size: $size, broker: $broker, round: $round, error: $error}' >>"$OUT"
    fi
    stop_broker
}

for round in $(seq "$ROUNDS"); do
    for curve in $CURVES; do
        for size in $(sizes_of "$curve"); do
            echo "round $round/$ROUNDS · $curve · $size" >&2
            for broker in $BROKERS; do
                run "$round" "$curve" "$size" "$broker"
            done
        done
    done
done

echo "results: $OUT" >&2
python3 bench/scale_plot.py "$OUT" ${PLOT_DIR:+--plots "$PLOT_DIR"} | tee "${OUT%.jsonl}.md"
