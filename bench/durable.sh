#!/usr/bin/env bash
# Durable QoS 1 (issue 16): `musqratt bench durable` (a persistent subscriber, Clean Session 0,
# online or away-then-draining) against musqratt with each `fsync` mode and in memory, and
# against Mosquitto with `persistence true`, each case on every system in turn for ROUNDS
# rounds. Every system gets a fresh, empty store directory on the disk under WORK_DIR, and the
# same queue bound (1,000,000 messages per session).
#
#   ROUNDS=3 MESSAGES=100000 bench/durable.sh
#
# Mosquitto writes its store at `autosave_interval` (default 30 min) and at exit, not per
# message: what it acknowledges is in memory only until then. musqratt acknowledges a message
# for a stored session once the write holding it went to the OS (`fsync = "always"`: synced).
# Needs: mosquitto (Debian package), jq. Results: bench/results/durable-<time>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-100000}
MODES=${MODES:-"online offline"}
SYSTEMS=${SYSTEMS:-"memory never interval always mosquitto"}
WORK_DIR=${WORK_DIR:-$PWD/target/durable-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -p musqratt-bench -p musqratt >&2
BENCH=$CARGO_TARGET_DIR/release/musqratt-bench
BROKER=$CARGO_TARGET_DIR/release/musqratt
PORT=27861
OUT=bench/results/durable-$(date +%Y%m%d-%H%M%S).jsonl
mkdir -p bench/results
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

start() { # SYSTEM: a fresh broker on PORT with an empty store; sets PID
    rm -rf "$WORK_DIR" && mkdir -p "$WORK_DIR"
    case $1 in
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 1000000\n' \
                "$PORT" "$WORK_DIR" >"$WORK_DIR/mosquitto.conf"
            mosquitto -c "$WORK_DIR/mosquitto.conf" >/dev/null 2>&1 &
            ;;
        *)
            {
                echo "listeners = [\"mqtt://127.0.0.1:$PORT\"]"
                echo "max_queued_messages = 1000000"
                echo "max_queued_bytes = 4294967296"
                if [ "$1" != memory ]; then
                    printf '[persistence]\npath = "%s/store"\nfsync = "%s"\n' "$WORK_DIR" "$1"
                fi
            } >"$WORK_DIR/musqratt.toml"
            "$BROKER" broker --config "$WORK_DIR/musqratt.toml" --log-level warn >/dev/null 2>&1 &
            ;;
    esac
    PID=$!
    wait_port "$PORT" || exit 1
}

for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        for system in $SYSTEMS; do
            start "$system"
            "$BENCH" durable --mode "$mode" --messages "$MESSAGES" \
                --url "mqtt://127.0.0.1:$PORT" --pid "$PID" --json --label "$system" |
                jq -c --arg system "$system" --argjson round "$round" \
                    '. + {system: $system, round: $round}' | tee -a "$OUT"
            kill "$PID"
            wait "$PID" 2>/dev/null || true
        done
    done
done
rm -rf "$WORK_DIR"
echo "results: $OUT" >&2
