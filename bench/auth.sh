#!/usr/bin/env bash
# Authentication and authorization costs (issue 14), musqratt next to Mosquitto with the same
# files, each case run on both brokers in turn for ROUNDS rounds:
#
#   login_101     CONNS clients log in (numbered users of a 10,000-user `$7$` file at 101
#                 iterations, Mosquitto 2.0's default), 128 at a time: connections/s
#   login_20k     the same against a 1,000-user file at 20,000 iterations (`musqratt passwd`'s
#                 default): checks that cost ~10 ms each
#   lat_logins    p99 latency of an authenticated publisher/subscriber pair (QoS 0, 10k msg/s)
#                 while 1,000 other clients log in at once (20,000-iteration file)
#   tp_noacl      QoS 0 1→1 throughput of authenticated clients, no ACL file
#   tp_acl1000    the same with a 1,000-rule ACL file (999 other users, the bench user's rule)
#   tp_acl_long   the same with the bench user's own 1,000 rules, the matching one last
#
#   ROUNDS=5 bench/auth.sh
#   PLACEMENT=different CASES="tp_noacl tp_acl1000 tp_acl_long" bench/auth.sh
#
# The throughput cases put musqratt's publisher on the subscriber's shard (PLACEMENT=same,
# the default) or on the other one (different): the two differ by ~1.5x, more than an ACL
# costs, so a comparison must hold the placement fixed.
#
# Needs: mosquitto (Debian package), python3, jq. Results: bench/results/auth-<time>.jsonl;
# every run reports the rest of the machine's CPU use (`other_cpu_cores`): keep it near 0.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-5000}
CASES=${CASES:-"login_101 login_20k lat_logins tp_noacl tp_acl1000 tp_acl_long"}
BROKERS=${BROKERS:-"musqratt mosquitto"}
PLACEMENT=${PLACEMENT:-same}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
TARGET=$CARGO_TARGET_DIR/release
PORT=27841
ulimit -n "$(ulimit -Hn)"

cargo build --release -p musqratt-bench -p musqratt >&2
BENCH=$TARGET/musqratt-bench
WORK=$(mktemp -d)
OUT=bench/results/auth-$(date +%Y%m%d-%H%M%S).jsonl
mkdir -p bench/results
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Password files made with Python's hashlib (independent of our code): `$7$` entries.
python3 - "$WORK" <<'EOF'
import base64, hashlib, os, sys
work = sys.argv[1]
def entry(user, password, iterations):
    salt = os.urandom(12)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}\n"
with open(f"{work}/pw101", "w") as f:
    f.write(entry("bench", "pw", 101))
    for i in range(10000):
        f.write(entry(f"u{i}", "pw", 101))
with open(f"{work}/pw20k", "w") as f:
    f.write(entry("bench", "pw", 20000))
    for i in range(1000):
        f.write(entry(f"u{i}", "pw", 20000))
with open(f"{work}/acl1000", "w") as f:
    for i in range(999):
        f.write(f"user u{i}\ntopic readwrite devices/u{i}/#\n")
    f.write("user bench\ntopic readwrite mqb/#\n")
with open(f"{work}/acl_long", "w") as f:
    f.write("user bench\n")
    for i in range(999):
        f.write(f"topic readwrite devices/{i}/+/state\n")
    f.write("topic readwrite mqb/#\n")
EOF
chmod 0644 "$WORK"/*

# start BROKER PASSWORD_FILE [ACL_FILE]: sets PID.
start() {
    local broker=$1 pw=$2 acl=${3:-}
    case $broker in
        musqratt)
            {
                echo "listeners = [\"mqtt://127.0.0.1:$PORT\"]"
                echo "threads = 2"
                echo "[auth]"
                echo "password_file = \"$pw\""
                [ -n "$acl" ] && echo "acl_file = \"$acl\""
            } >"$WORK/musqratt.toml"
            "$TARGET/musqratt" broker -c "$WORK/musqratt.toml" --log-level warn &
            ;;
        mosquitto)
            {
                echo "listener $PORT 127.0.0.1"
                echo "allow_anonymous false"
                echo "password_file $pw"
                [ -n "$acl" ] && echo "acl_file $acl"
                echo "user root"
                echo "max_connections -1"
            } >"$WORK/mosquitto.conf"
            mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
            ;;
    esac
    PID=$!
    wait_port "$PORT" || exit 1
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    sleep 0.3
}

# run CASE BROKER ROUND ARGS...: one bench run, one JSON line.
run() {
    local case=$1 broker=$2 round=$3
    shift 3
    "$BENCH" "$@" --pid "$PID" --json --label "$broker" |
        jq -c --arg case "$case" --argjson round "$round" '. + {case: $case, round: $round}' |
        tee -a "$OUT"
}

for round in $(seq "$ROUNDS"); do
    for case in $CASES; do
        for broker in $BROKERS; do
            url="mqtt://bench:pw@127.0.0.1:$PORT"
            case $case in
                login_101)
                    start "$broker" "$WORK/pw101"
                    run "$case" "$broker" "$round" conns --connections "$CONNS" --parallel 128 \
                        --users 10000 --hold 1s --url "mqtt://u:pw@127.0.0.1:$PORT"
                    ;;
                login_20k)
                    start "$broker" "$WORK/pw20k"
                    run "$case" "$broker" "$round" conns --connections 1000 --parallel 128 \
                        --users 1000 --hold 1s --url "mqtt://u:pw@127.0.0.1:$PORT"
                    ;;
                lat_logins)
                    start "$broker" "$WORK/pw20k"
                    # The storm starts 1.5 s into the measured window.
                    (sleep 2.5 && "$BENCH" conns --connections 1000 --parallel 1000 --users 1000 \
                        --hold 1s --url "mqtt://u:pw@127.0.0.1:$PORT" >/dev/null 2>&1) &
                    storm=$!
                    run "$case" "$broker" "$round" latency --qos 0 --rate 10000 \
                        --duration "$DURATION" --url "$url"
                    wait "$storm" 2>/dev/null || true
                    ;;
                tp_noacl)
                    start "$broker" "$WORK/pw101"
                    run "$case" "$broker" "$round" throughput --qos 0 --publishers 1 \
                        --subscribers 1 --placement "$PLACEMENT" --shards 2 --duration "$DURATION" \
                        --url "$url"
                    ;;
                tp_acl1000)
                    start "$broker" "$WORK/pw101" "$WORK/acl1000"
                    run "$case" "$broker" "$round" throughput --qos 0 --publishers 1 \
                        --subscribers 1 --placement "$PLACEMENT" --shards 2 --duration "$DURATION" \
                        --url "$url"
                    ;;
                tp_acl_long)
                    start "$broker" "$WORK/pw101" "$WORK/acl_long"
                    run "$case" "$broker" "$round" throughput --qos 0 --publishers 1 \
                        --subscribers 1 --placement "$PLACEMENT" --shards 2 --duration "$DURATION" \
                        --url "$url"
                    ;;
            esac
            stop
        done
    done
done
echo "results: $OUT" >&2
