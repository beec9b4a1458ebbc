#!/usr/bin/env bash
# The bare-metal broker under real clients: builds the board image (release), boots it in
# QEMU's mps2-an385 with user networking forwarding 127.0.0.1:PORT to the board's 1883, runs
# mosquitto_pub/sub and paho-mqtt (3.1.1 and 5.0, QoS 0/1/2, retained) and the board's own
# checks (concurrent clients, refusal, socket reuse, a QoS 1 burst, keep-alive), and fails on
# any failure or on a panic in the board's log. QEMU is always stopped. BOARD_PORT (default
# 18995) is the host port.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
port="${BOARD_PORT:-18995}"
host=127.0.0.1
target="${CARGO_TARGET_DIR:-$here/target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
export CARGO_TARGET_DIR="$target"
elf="$target/thumbv7m-none-eabi/release/musqratt-qemu-cortex-m"

(cd "$here" && cargo build --release --locked)

log="$(mktemp)"
qemu-system-arm -M mps2-an385 -nographic -monitor none -serial "file:$log" \
    -nic "user,model=lan9118,hostfwd=tcp:$host:$port-:1883" -kernel "$elf" &
qemu=$!
cleanup() {
    kill "$qemu" 2>/dev/null || true
    wait "$qemu" 2>/dev/null || true
    echo "--- board log (last lines) ---"
    tail -n 20 "$log" || true
    rm -f "$log"
}
trap cleanup EXIT

# QEMU's forwarder listens on the host at once; the board is ready when it says so.
for _ in $(seq 1 300); do
    grep -q "listening on" "$log" 2>/dev/null && break
    kill -0 "$qemu" 2>/dev/null || { echo "QEMU exited"; exit 1; }
    sleep 0.1
done
grep -q "listening on" "$log" || { echo "the board did not come up"; cat "$log"; exit 1; }
head -n 3 "$log"

status=0
bash "$root/tests/real_clients/mosquitto_check.sh" "$host" "$port" || status=1
python3 "$root/tests/real_clients/paho_check.py" "$host" "$port" || status=1
python3 "$here/board_check.py" "$host" "$port" 8 || status=1
if grep -E "PANIC|hard fault" "$log"; then
    echo "FAIL the board panicked"
    status=1
fi
kill -0 "$qemu" 2>/dev/null || { echo "FAIL QEMU died"; status=1; }
echo "heap after the run: $(grep -o 'heap used=[0-9]* peak=[0-9]*' "$log" | tail -n 1)"
exit "$status"
