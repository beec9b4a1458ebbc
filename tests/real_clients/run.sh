#!/usr/bin/env bash
# Starts the built `musqratt` broker with broker.toml (MQTT on 127.0.0.1:18993, MQTT-SN on UDP
# 127.0.0.1:18994, 2 shards), runs the real-client checks (mosquitto_pub/sub, paho-mqtt,
# mqtt-sn-12) against it, and stops it. MUSQRATT names the binary (default:
# $CARGO_TARGET_DIR/debug/musqratt, or target/debug/musqratt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
bin="${MUSQRATT:-${CARGO_TARGET_DIR:-$root/target}/debug/musqratt}"
host=127.0.0.1
port=18993
sn_port=18994

"$bin" broker --config "$here/broker.toml" --log-level warn &
broker=$!
trap 'kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null || true' EXIT
# Wait for the listener.
for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then break; fi
    sleep 0.1
done

status=0
bash "$here/mosquitto_check.sh" "$host" "$port" || status=1
python3 "$here/paho_check.py" "$host" "$port" || status=1
python3 "$here/mqttsn_check.py" "$host" "$port" "$sn_port" || status=1
kill -0 "$broker" || { echo "the broker died"; status=1; }
exit "$status"
