#!/usr/bin/env bash
# Prints the size of the release wasm that `scripts/build.sh` produced, and of the browser
# paywall page (its HTML with the inline script, QR code generator and style, as a browser
# navigation gets it for a sample route): raw and gzip -9, in bytes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
wasm=build/index_bg.wasm
[ -f "$wasm" ] || { echo "no $wasm: run bash scripts/build.sh first" >&2; exit 1; }
raw=$(wc -c < "$wasm")
gz=$(gzip -9c "$wasm" | wc -c)
echo "release wasm: raw $raw bytes ($((raw / 1024)) KiB), gzip -9 $gz bytes ($((gz / 1024)) KiB)"
page=$(mktemp)
trap 'rm -f "$page"' EXIT
cargo run -q --example paywall_page > "$page"
raw=$(wc -c < "$page")
gz=$(gzip -9c "$page" | wc -c)
echo "paywall page: raw $raw bytes ($((raw / 1024)) KiB), gzip -9 $gz bytes ($((gz / 1024)) KiB); budget 30 KiB gzip"
