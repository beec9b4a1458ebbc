#!/usr/bin/env bash
# Real clients: mosquitto_pub/mosquitto_sub publish and subscribe through a broker at HOST PORT,
# MQTT 3.1.1 and 5.0, QoS 0, 1 and 2, plus a retained message. Exit 0 when every case passes.
set -euo pipefail
host=${1:?usage: mosquitto_check.sh HOST PORT}
port=${2:?usage: mosquitto_check.sh HOST PORT}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# CASE VERSION QOS: a subscriber waits for one message; the publisher sends until it arrives
# (mosquitto_sub does not say when its SUBACK came, so the first publish may precede it).
deliver() {
    local version=$1 qos=$2
    local topic="rc/mosquitto/$version/$qos/$$" msg="hello-$version-q$qos-$RANDOM"
    mosquitto_sub -h "$host" -p "$port" -V "$version" -q "$qos" -t "$topic" -C 1 -W 10 \
        -i "msub-$version-$qos-$$" >"$tmp/out" 2>"$tmp/err" &
    local sub=$!
    local tries=0
    sleep 0.2
    while kill -0 "$sub" 2>/dev/null && [ "$tries" -lt 40 ]; do
        mosquitto_pub -h "$host" -p "$port" -V "$version" -q "$qos" -t "$topic" -m "$msg" \
            -i "mpub-$version-$qos-$$"
        tries=$((tries + 1))
        sleep 0.2
    done
    if wait "$sub" && [ "$(cat "$tmp/out")" = "$msg" ]; then
        echo "ok   mosquitto -V $version QoS $qos"
    else
        echo "FAIL mosquitto -V $version QoS $qos: got '$(cat "$tmp/out")' $(cat "$tmp/err")"
        failures=$((failures + 1))
    fi
}

# RETAINED VERSION: a retained message reaches a later subscriber, flagged retained.
retained() {
    local version=$1
    local topic="rc/mosquitto/retained/$version/$$" msg="kept-$version-$RANDOM" got=""
    mosquitto_pub -h "$host" -p "$port" -V "$version" -q 1 -r -t "$topic" -m "$msg"
    for _ in $(seq 1 20); do
        got=$(mosquitto_sub -h "$host" -p "$port" -V "$version" -q 1 -t "$topic" -C 1 -W 1 \
            -F '%r %p' 2>/dev/null || true)
        [ "$got" = "1 $msg" ] && break
        sleep 0.2
    done
    # Clear it: an empty retained message.
    mosquitto_pub -h "$host" -p "$port" -V "$version" -q 1 -r -n -t "$topic"
    if [ "$got" = "1 $msg" ]; then
        echo "ok   mosquitto -V $version retained"
    else
        echo "FAIL mosquitto -V $version retained: got '$got'"
        failures=$((failures + 1))
    fi
}

for version in mqttv311 mqttv5; do
    for qos in 0 1 2; do
        deliver "$version" "$qos"
    done
    retained "$version"
done

if [ "$failures" -gt 0 ]; then
    echo "mosquitto clients: $failures case(s) failed"
    exit 1
fi
echo "mosquitto clients: all 8 cases passed"
