#!/usr/bin/env bash
# Builds the dashboard's WebAssembly module (musqratt-wasm, docs/adr/0020-dashboard-wasm.md)
# and puts it where the binary embeds it, musqratt/src/dashboard/musqratt.wasm, with the hash of
# the sources it was built from (musqratt.wasm.inputs). Run it after changing musqratt-wasm or
# musqratt-proto, and commit both files. Needs `rustup target add wasm32-unknown-unknown`.
#
# --check (CI): first fail if the sources changed since the committed module was built (it
# would be stale), then build and use this build, so the tests run what the sources make. The
# bytes may differ from the committed ones with another rustc (the toolchain is not pinned);
# that is reported, not failed.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out=musqratt/src/dashboard/musqratt.wasm

inputs() {
    find musqratt-wasm/Cargo.toml musqratt-wasm/src musqratt-proto/Cargo.toml musqratt-proto/src \
        -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
}

if [ "${1:-}" = "--check" ] && [ "$(inputs)" != "$(cat "$out.inputs")" ]; then
    echo "$out is stale: musqratt-wasm or musqratt-proto changed since it was built." >&2
    echo "Run musqratt-wasm/build.sh and commit $out and $out.inputs." >&2
    exit 1
fi
cargo build -p musqratt-wasm --target wasm32-unknown-unknown --profile wasm --locked
built="$target/wasm32-unknown-unknown/wasm/musqratt_wasm.wasm"
if cmp -s "$built" "$out"; then
    echo "$out: this build is byte for byte the committed one"
else
    echo "$out: this build differs from the committed one (another rustc?); using this build"
fi
cp "$built" "$out"
inputs >"$out.inputs"
echo "$out: $(stat -c %s "$out") bytes"
