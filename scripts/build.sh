#!/usr/bin/env bash
# Builds the Worker (release wasm + JS shim) into build/ with worker-build. Skips the build when
# build/ was made from the same sources (a SHA-256 of every input, kept in build/.sources-stamp),
# so `wrangler dev` starts at once; X402_REBUILD=1 builds anyway.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
# The inputs of build/: the crate (src/, manifests, build script), this script and the entry
# rewrite, and the one setting that changes the output.
stamp="$({
  find src Cargo.toml Cargo.lock build.rs scripts/build.sh scripts/lean-entry.mjs -type f -print0 | sort -z | xargs -0 sha256sum
  echo "X402_KEEP_WASM_NAMES=${X402_KEEP_WASM_NAMES:-}"
} | sha256sum | cut -d' ' -f1)"
if [ -z "${X402_REBUILD:-}" ] && [ -f build/index_bg.wasm ] && [ -f build/worker/shim.mjs ] \
  && [ "$(cat build/.sources-stamp 2>/dev/null)" = "$stamp" ]; then
  echo "build: build/ is up to date with the sources (X402_REBUILD=1 rebuilds)"
  exit 0
fi
rm -f build/.sources-stamp
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
echo "$stamp" > build/.sources-stamp
