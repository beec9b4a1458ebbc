#!/bin/bash
cd "$(dirname "$0")/.."
B=target/release/musqratt; OUT=${OUT:-bench/results/single-round.jsonl}
run() { # label port args...
  local label=$1 port=$2; shift 2
  timeout 60 $B bench --url mqtt://127.0.0.1:$port --duration 3s --warmup 1s --json --label "$label" "$@" >> $OUT 2>>"$OUT.err"
}
for broker in tokio mosquitto rumqttd io-uring blocking; do
  case $broker in
    tokio|io-uring|blocking) $B broker --runtime $broker --threads 2 --log-level error --listen mqtt://127.0.0.1:27831 & PID=$!; port=27831; label=musqratt-$broker;;
    mosquitto) mosquitto -c bench/mosquitto.conf >/dev/null 2>&1 & PID=$!; port=27832; label=mosquitto;;
    rumqttd) ~/.cargo/bin/rumqttd -c bench/rumqttd.toml >/dev/null 2>&1 & PID=$!; port=27833; label=rumqttd;;
  esac
  sleep 1.5
  run $label $port latency --qos 0 --rate 10000 --payload 64
  run $label $port throughput --qos 0 --publishers 1 --subscribers 1
  run $label $port throughput --qos 1 --publishers 1 --subscribers 1
  if [ ${broker#musqratt} = $broker ] && [ $broker != io-uring ] && [ $broker != blocking ]; then
    run $label $port throughput --qos 1 --publishers 4 --subscribers 2
    run $label $port fanout --qos 0 --subscribers 50
  fi
  kill $PID; wait $PID 2>/dev/null
done
timeout 60 $B bench --duration 3s --warmup 1s --json --label floor floor --mode latency --rate 10000 --payload 64 >> $OUT 2>>"$OUT.err"
echo done
