#!/usr/bin/env bash
# Builds the Worker (release wasm + JS shim) into build/ with worker-build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
worker-build --release
# The default export becomes a lean fetch entry with the same panic recovery (scripts/lean-entry.mjs).
node scripts/lean-entry.mjs build
# The wasm ships without its name section (function names: about 32 KB gzip, used only by stack
# traces and profiles; worker-build always keeps it). X402_KEEP_WASM_NAMES=1 keeps it, for
# bench/profile.mjs.
if [ -z "${X402_KEEP_WASM_NAMES:-}" ]; then
  features=(mutable-globals sign-ext nontrapping-float-to-int bulk-memory multivalue reference-types exception-handling)
  "$WASM_OPT_BIN" build/index_bg.wasm --strip-debug "${features[@]/#/--enable-}" -o build/index_bg.wasm
fi
