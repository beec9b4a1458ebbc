#!/usr/bin/env bash
# Instructions per PUBLISH of musqratt-proto next to rumqttc's mqttbytes, encode and decode,
# for the cases of musqratt-proto/benches/codec.rs, counted with callgrind (deterministic:
# usable on a busy machine where wall time is not). See musqratt-proto/benches/codec_instr.rs.
#
#   bench/codec-instr.sh                 # all 16 cases
#   CASES="v5/64B/qos0" bench/codec-instr.sh
#
# Prints a Markdown table: instructions per packet for each library and rumqttc/musqratt (the
# speed ratio if time followed instructions: above 1 means musqratt runs fewer). Raw callgrind
# totals go to bench/results/codec-instr-<time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-4}
CASES=${CASES:-"v311/64B/qos0 v311/64B/qos1 v311/1KiB/qos0 v311/1KiB/qos1 v5/64B/qos0 v5/64B/qos1 v5/1KiB/qos0 v5/1KiB/qos1"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$(cargo bench -p musqratt-proto --bench codec_instr --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*codec_instr[^"]*\)".*/\1/p' | tail -1)
[ -x "$BIN" ] || { echo "codec_instr was not built" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p bench/results
RAW=bench/results/codec-instr-$(date +%Y%m%d-%H%M%S).txt

# Instructions per packet of one operation.
count() {
    local out=$WORK/out
    valgrind --tool=callgrind --toggle-collect='*measured*' --callgrind-out-file="$WORK/cg" \
        "$BIN" "$1" "$2" "$3" "$ROUNDS" >"$out" 2>"$WORK/err"
    local total packets
    total=$(sed -n 's/^summary: //p' "$WORK/cg")
    packets=$(awk '{print $2}' "$out")
    echo "$1 $2 $3 total $total packets $packets rounds $ROUNDS" >>"$RAW"
    echo $(( (total + packets * ROUNDS / 2) / (packets * ROUNDS) ))
}

echo "| case | musqratt instr/packet | rumqttc instr/packet | rumqttc/musqratt |"
echo "|---|---:|---:|---:|"
for op in encode decode; do
    for case in $CASES; do
        ours=$(count "$op" musqratt "$case")
        theirs=$(count "$op" rumqttc "$case")
        ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", b / a }')
        echo "| $op/$case | $ours | $theirs | $ratio |"
    done
done
echo "raw totals: $RAW" >&2
