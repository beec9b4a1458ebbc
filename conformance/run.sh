#!/bin/sh
# Runs the MusQraTT conformance suite against a broker.
#
#   conformance/run.sh HOST:PORT [PEER] [-- cargo test filter/args...]
#       test the broker at HOST:PORT; PEER (e.g. "mosquitto") skips that broker's documented
#       deviations from the specification, each with its reason printed.
#   conformance/run.sh --mosquitto [-- ...]
#       start Mosquitto with conformance/mosquitto.conf on 127.0.0.1:18883, run the suite
#       against it with PEER=mosquitto, stop it.
#
# Prints every skip (SKIP / SKIP-DEVIATION lines) and a summary; exits non-zero on a failure.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
mosq_pid=""
cleanup() {
    if [ -n "$mosq_pid" ]; then kill "$mosq_pid" 2>/dev/null || true; wait "$mosq_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

if [ "${1:-}" = "--mosquitto" ]; then
    shift
    addr=127.0.0.1:18883
    peer=mosquitto
    command -v mosquitto >/dev/null || { echo "mosquitto not installed (apt-get install mosquitto)" >&2; exit 2; }
    mosquitto -c "$here/mosquitto.conf" >"${TMPDIR:-/tmp}/musqratt-conformance-mosquitto.log" 2>&1 &
    mosq_pid=$!
    sleep 0.5
else
    addr=${1:?usage: run.sh HOST:PORT [PEER] [-- args] | run.sh --mosquitto [-- args]}
    shift
    peer=${MQTT_CONFORMANCE_PEER:-}
    if [ $# -gt 0 ] && [ "$1" != "--" ]; then peer=$1; shift; fi
fi
[ "${1:-}" = "--" ] && shift

log=$(mktemp)
status=0
cd "$root"
MQTT_CONFORMANCE_ADDR=$addr MQTT_CONFORMANCE_PEER=$peer RUST_BACKTRACE=0 \
    cargo test -p musqratt-conformance --no-fail-fast "$@" -- --nocapture >"$log" 2>&1 || status=$?

grep -E '^SKIP|panicked|^test .* FAILED' "$log" || true
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
deviations=$(grep -c '^SKIP-DEVIATION' "$log" || true)
skipped=$(grep -c '^SKIP ' "$log" || true)
echo "broker $addr (peer: ${peer:-none}): $((passed - deviations)) passed," \
     "$deviations skipped as documented deviations, $skipped notices, $failed failed"
if [ "$status" -ne 0 ]; then echo "full log: $log"; else rm -f "$log"; fi
exit "$status"
