#!/usr/bin/env bash
# QoS 1 4->2 with max_queued_messages 1000 (default) vs 100000, tokio and blocking runtimes,
# DURATION 10s, 3 alternating rounds; records loss and the broker's peak RSS (VmHWM).
set -u
cd /work/wt-perfrun
ulimit -n 20000
BIN=$1; OUT=$2; DUR=${DUR:-10s}
printf 'max_queued_messages = 100000\n' > /tmp/pr-q100k.toml
printf 'max_queued_messages = 1000\n' > /tmp/pr-q1k.toml
: > "$OUT"
port=27950
for round in 1 2 3; do
  for rt in tokio blocking; do
    for q in 1k 100k; do
      port=$((port+1))
      "$BIN" broker --config /tmp/pr-q$q.toml --runtime $rt --threads 2 --log-level error --listen mqtt://127.0.0.1:$port >/dev/null 2>&1 &
      bp=$!; sleep 0.4
      line=$(/work/target-perfrun/release/musqratt-bench throughput --qos 1 --publishers 4 --subscribers 2 --url mqtt://127.0.0.1:$port --duration $DUR --warmup 1s --json --label "$rt-q$q" 2>/dev/null)
      hwm=$(awk '/VmHWM/{print $2}' /proc/$bp/status)
      kill $bp; wait $bp 2>/dev/null
      echo "$line" | jq -c --argjson round $round --argjson hwm_kb "$hwm" '{label: .broker, round: $round, hwm_kb: $hwm_kb, deliveries_per_s: .results.deliveries_per_s, publish_per_s: .results.publish_per_s, lost: .results.lost, p50_us: .results.latency_us.p50}' | tee -a "$OUT" >&2
    done
  done
done
