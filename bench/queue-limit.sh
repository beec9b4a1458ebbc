#!/usr/bin/env bash
# QoS 1 4->2 throughput against `musqratt broker` with max_queued_messages 1000 (the default)
# and 100000, per runtime, in alternating rounds; records loss and the broker's peak RSS (VmHWM).
#
#   bench/queue-limit.sh BINARY OUT.jsonl
#
# BINARY: a release `musqratt` (its `bench` subcommand drives the load). Environment: DUR (10s),
# ROUNDS (3), RUNTIMES ("tokio blocking"), QUEUES ("1000 100000"). Needs jq.
set -u
BIN=$1; OUT=$2
DUR=${DUR:-10s}; ROUNDS=${ROUNDS:-3}
RUNTIMES=${RUNTIMES:-tokio blocking}; QUEUES=${QUEUES:-1000 100000}
ulimit -n 20000
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
: > "$OUT"
port=27950
for round in $(seq 1 "$ROUNDS"); do
  for rt in $RUNTIMES; do
    for q in $QUEUES; do
      port=$((port+1))
      printf 'max_queued_messages = %s\n' "$q" > "$dir/q.toml"
      "$BIN" broker --config "$dir/q.toml" --runtime "$rt" --threads 2 --log-level error \
        --listen "mqtt://127.0.0.1:$port" >/dev/null 2>&1 &
      bp=$!; sleep 0.4
      line=$("$BIN" bench throughput --qos 1 --publishers 4 --subscribers 2 \
        --url "mqtt://127.0.0.1:$port" --duration "$DUR" --warmup 1s --json --label "$rt-q$q" 2>/dev/null)
      hwm=$(awk '/VmHWM/{print $2}' "/proc/$bp/status")
      kill "$bp"; wait "$bp" 2>/dev/null
      echo "$line" | jq -c --argjson round "$round" --argjson hwm_kb "$hwm" \
        '{label: .broker, round: $round, hwm_kb: $hwm_kb, deliveries_per_s: .results.deliveries_per_s, publish_per_s: .results.publish_per_s, lost: .results.lost, p50_us: .results.latency_us.p50}' \
        | tee -a "$OUT" >&2
    done
  done
done
