#!/usr/bin/env bash
# Shows that the compio runtime serves MQTT through io_uring: runs the example broker under strace
# while mosquitto_sub and mosquitto_pub use it, and checks that from the first bind on its socket
# I/O goes through io_uring_enter, with no epoll/poll/select call and no direct accept, recv*,
# send*, readv or writev call (plain read/write are not traced: the broker makes them only on
# stdio and on compio's eventfd wake-up; `shutdown` on the close path is a plain syscall).
# The one exception: what a step queues on a connection with nothing in flight is written at the
# end of that step, by the thread that ran it (the shard's own, or another shard's in person),
# with a non-blocking `sendto`/`sendmsg` (MSG_DONTWAIT, docs/adr/0012); those are counted, not
# failed.
#
# Where the kernel (or a seccomp sandbox) refuses io_uring, the broker falls back to epoll: the
# script then says so and exits 0, since the fallback is the intended behaviour there.
#
# Needs: strace, mosquitto-clients (apt-get install -y strace mosquitto-clients).
# Usage: check-io-uring.sh [PORT]   (default 18831)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${1:-18831}"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$(mktemp -d)"
broker_pid=""
cleanup() {
    exec 3>&- 2>/dev/null || true
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then kill "$broker_pid" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

for tool in strace mosquitto_pub mosquitto_sub; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y strace mosquitto-clients" >&2; exit 2; }
done

(cd "$root" && cargo build -q -p musqratt-compio --example compio_broker)
bin="$target/debug/examples/compio_broker"

mkfifo "$work/stdin"
# The broker stops gracefully when its standard input (this fifo) is closed.
strace -f -qq -o "$work/strace.log" \
    -e trace=io_uring_setup,io_uring_enter,%net,readv,writev,poll,ppoll,select,pselect6,epoll_wait,epoll_pwait,epoll_pwait2,epoll_create1,epoll_ctl \
    "$bin" "127.0.0.1:$port" 2 --stdin-shutdown <"$work/stdin" >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
exec 3>"$work/stdin"

for _ in $(seq 100); do
    grep -q "^driver:" "$work/broker.out" 2>/dev/null && break
    sleep 0.1
done
grep -q "^driver:" "$work/broker.out" || { cat "$work/broker.err" >&2; echo "broker did not start" >&2; exit 1; }

mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv5 -i uring-sub -t 'check/#' -q 2 -C 4 -W 10 -v \
    >"$work/sub.out" &
sub_pid=$!
sleep 0.5
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -i uring-pub0 -t check/a -m zero -q 0
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -i uring-pub1 -t check/b -m one -q 1
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -i uring-pub2 -t check/c -m two -q 2
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv5 -i uring-pub5 -t check/d -m five -q 1
wait "$sub_pid" || { echo "subscriber failed or timed out" >&2; cat "$work/sub.out" >&2; exit 1; }
echo "subscriber received:"
sed 's/^/  /' "$work/sub.out"
[[ "$(wc -l <"$work/sub.out")" -eq 4 ]] || { echo "expected 4 messages" >&2; exit 1; }

exec 3>&-   # end of stdin: graceful shutdown
wait "$broker_pid" || { echo "broker exited with an error" >&2; exit 1; }
broker_pid=""

if ! grep -q "^driver: io_uring" "$work/broker.out"; then
    echo "NOTE: io_uring unavailable here; the broker served on its epoll fallback ($(grep '^driver:' "$work/broker.out"))"
    exit 0
fi
log="$work/strace.log"
first_bind="$(grep -n 'bind(' "$log" | head -1 | cut -d: -f1)"
[[ -n "$first_bind" ]] || { echo "no bind in the trace" >&2; exit 1; }
serving="$(tail -n +"$first_bind" "$log")"
enters="$(grep -c 'io_uring_enter(' <<<"$serving" || true)"
readiness="$(grep -E '(^|[^_a-z])(poll|ppoll|select|pselect6|epoll_[a-z0-9_]+)\(' <<<"$serving" || true)"
socket_io="$(grep -E '(^|[^_a-z])(accept4?|recvfrom|recvmsg|recvmmsg|sendto|sendmsg|sendmmsg|readv|writev)\(' <<<"$serving" || true)"
in_person="$(grep -E '(^|[^_a-z])(sendto|sendmsg)\(.*MSG_DONTWAIT' <<<"$socket_io" || true)"
direct="$(grep -vE '(^|[^_a-z])(sendto|sendmsg)\(.*MSG_DONTWAIT' <<<"$socket_io" || true)"
echo "strace: $enters io_uring_enter call(s) on the serving path"
echo "strace: $(grep -c . <<<"$in_person" || true) non-blocking send(s) at the end of a step (docs/adr/0012)"
fail=0
[[ "$enters" -gt 0 ]] || { echo "FAIL: no io_uring_enter" >&2; fail=1; }
[[ -z "$readiness" ]] || { echo "FAIL: readiness calls on the serving path:" >&2; echo "$readiness" >&2; fail=1; }
[[ -z "$direct" ]] || { echo "FAIL: socket I/O outside io_uring:" >&2; echo "$direct" >&2; fail=1; }
[[ "$fail" -eq 0 ]] || exit 1
echo "OK: accepts, reads and writes went through io_uring; no epoll/poll/select on the serving path"
