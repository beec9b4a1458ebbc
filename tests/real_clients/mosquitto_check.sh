#!/usr/bin/env bash
# mosquitto_pub / mosquitto_sub (real clients) through a broker at QoS 0, 1 and 2, over MQTT 3.1.1
# and 5.0, plus a retained message. Usage: mosquitto_check.sh HOST PORT.
set -euo pipefail
host=$1 port=$2
for version in mqttv311 mqttv5; do
    for qos in 0 1 2; do
        topic="mosq/$version/q$qos"
        out=$(mktemp)
        mosquitto_sub -h "$host" -p "$port" -V "$version" -q "$qos" -t "$topic" -C 1 -W 5 >"$out" &
        sub=$!
        sleep 0.3
        mosquitto_pub -h "$host" -p "$port" -V "$version" -q "$qos" -t "$topic" -m "hello $qos"
        wait "$sub"
        [ "$(cat "$out")" = "hello $qos" ] || { echo "mosquitto $version QoS $qos: got '$(cat "$out")'" >&2; exit 1; }
        rm -f "$out"
        echo "mosquitto_pub/sub $version QoS $qos delivered"
    done
    mosquitto_pub -h "$host" -p "$port" -V "$version" -q 1 -r -t "mosq/$version/retained" -m kept
    got=$(mosquitto_sub -h "$host" -p "$port" -V "$version" -t "mosq/$version/retained" -C 1 -W 5)
    [ "$got" = kept ] || { echo "retained ($version): got '$got'" >&2; exit 1; }
    echo "mosquitto_sub $version got the retained message"
done
