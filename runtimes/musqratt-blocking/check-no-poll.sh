#!/usr/bin/env bash
# Proves that the blocking runtime serves MQTT without any readiness API: runs the example broker
# under strace while mosquitto_sub and mosquitto_pub talk to it, and fails if poll, ppoll, select,
# pselect6 or any epoll call appears on the serving path (from the broker's first bind on).
#
# Rust's standard library itself calls poll() once before main, to check that file descriptors
# 0-2 are open; that call is before any bind and is reported but not counted.
#
# Needs: strace, mosquitto-clients (apt-get install -y strace mosquitto-clients).
# Usage: check-no-poll.sh [PORT]   (default 18830)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${1:-18830}"
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

(cd "$root" && cargo build -q -p musqratt-blocking --example blocking_broker)
bin="$target/debug/examples/blocking_broker"

calls=poll,ppoll,select,pselect6,epoll_wait,epoll_pwait,epoll_create,epoll_create1,epoll_ctl
mkfifo "$work/stdin"
# The broker stops gracefully when its standard input (this fifo) is closed.
strace -f -qq -o "$work/strace.log" -e trace="$calls,bind,listen,accept,accept4" \
    "$bin" "127.0.0.1:$port" 2 --stdin-shutdown <"$work/stdin" >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
exec 3>"$work/stdin"

for _ in $(seq 100); do
    grep -q "listening on" "$work/broker.out" 2>/dev/null && break
    sleep 0.1
done
grep -q "listening on" "$work/broker.out" || { cat "$work/broker.err" >&2; echo "broker did not start" >&2; exit 1; }

# A 5.0 subscriber and 3.1.1 publishers at QoS 0, 1 and 2, plus a second 5.0 publisher.
mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv5 -i strace-sub -t 'check/#' -q 2 -C 4 -W 10 -v \
    >"$work/sub.out" &
sub_pid=$!
sleep 0.5
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -i strace-pub0 -t check/a -m zero -q 0
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -i strace-pub1 -t check/b -m one -q 1
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -i strace-pub2 -t check/c -m two -q 2
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv5 -i strace-pub5 -t check/d -m five -q 1
wait "$sub_pid" || { echo "subscriber failed or timed out" >&2; cat "$work/sub.out" >&2; exit 1; }
echo "subscriber received:"
sed 's/^/  /' "$work/sub.out"
[[ "$(wc -l <"$work/sub.out")" -eq 4 ]] || { echo "expected 4 messages" >&2; exit 1; }

exec 3>&-   # end of stdin: graceful shutdown
wait "$broker_pid" || { echo "broker exited with an error" >&2; exit 1; }
broker_pid=""

log="$work/strace.log"
first_bind="$(grep -n 'bind(' "$log" | head -1 | cut -d: -f1)"
[[ -n "$first_bind" ]] || { echo "no bind in the trace" >&2; exit 1; }
pattern='(^|[^_a-z])(poll|ppoll|select|pselect6|epoll_[a-z0-9_]+)\('
before="$(head -n $((first_bind - 1)) "$log" | grep -cE "$pattern" || true)"
serving="$(tail -n +"$first_bind" "$log" | grep -E "$pattern" || true)"
accepts="$(grep -cE 'accept4?\(' "$log" || true)"
threads="$(cut -d' ' -f1 "$log" | sort -u | wc -l)"
echo "strace: $(wc -l <"$log") traced calls (by $threads thread(s) making them), $accepts accept call(s)"
echo "strace: $before poll-family call(s) before the first bind (std's fd 0-2 check at startup)"
if [[ -n "$serving" ]]; then
    echo "FAIL: poll-family calls on the serving path:" >&2
    echo "$serving" >&2
    exit 1
fi
echo "OK: no poll, ppoll, select, pselect6 or epoll call on the serving path"
