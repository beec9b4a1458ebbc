#!/usr/bin/env bash
# Runs the real-client checks (mosquitto_pub/sub, paho-mqtt) against the built `musqratt` binary.
# Needs: mosquitto-clients, python3 with paho-mqtt 2.x. Usage: tests/real_clients/run.sh [PORT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
port=${1:-18993}
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build -q -p musqratt)
"$target/debug/musqratt" broker --listen "mqtt://127.0.0.1:$port" --threads 2 --log-level warn &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
sleep 1
bash "$here/mosquitto_check.sh" 127.0.0.1 "$port"
python3 "$here/paho_check.py" 127.0.0.1 "$port"
kill -TERM "$broker"
wait "$broker"
echo "real clients: all checks passed"
