#!/usr/bin/env bash
# The figures of docs/PORTING.md ("Bare metal (Cortex-M on QEMU)"): image size, heap per client, and round-trip latency
# (paho-mqtt ping-pong, 1000 messages) through the board in QEMU next to the Linux broker
# (`musqratt broker`, built in release). One run; the host is shared and noisy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
target="${CARGO_TARGET_DIR:-$here/target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
export CARGO_TARGET_DIR="$target"
elf="$target/thumbv7m-none-eabi/release/musqratt-qemu-cortex-m"
board_port=18996
linux_port=18997
n="${N:-1000}"

(cd "$here" && cargo build --release --locked)
(cd "$root" && cargo build --release -p musqratt --locked)
size="$(find "$(rustc --print sysroot)" -name llvm-size -type f | head -n 1)"
if [ -n "$size" ]; then "$size" -A "$elf" | grep -E '^\.(vector_table|text|rodata|data|bss|uninit) '; fi

log="$(mktemp)"
qemu-system-arm -M mps2-an385 -nographic -monitor none -serial "file:$log" \
    -nic "user,model=lan9118,hostfwd=tcp:127.0.0.1:$board_port-:1883" -kernel "$elf" &
qemu=$!
"$target/release/musqratt" broker --listen "mqtt://127.0.0.1:$linux_port" --log-level warn &
linux=$!
trap 'kill "$qemu" "$linux" 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 300); do grep -q "listening on" "$log" && break; sleep 0.1; done

python3 "$here/measure_heap.py" 127.0.0.1 "$board_port" "$log"
for qos in 0 1; do
    python3 "$here/latency.py" 127.0.0.1 "$board_port" "$n" "$qos"
    python3 "$here/latency.py" 127.0.0.1 "$linux_port" "$n" "$qos"
done
grep -o 'stack=[0-9]*' "$log" | tail -n 1
