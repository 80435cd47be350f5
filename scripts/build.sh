#!/usr/bin/env bash
# Builds the Worker into build/: index_bg.wasm (the release wasm) and index.js (the entry module,
# src/edge/entry.mjs, bundled with wasm-bindgen's bindings), which wrangler.toml's `main` names.
# Skips the build when build/ was made from the same sources (a SHA-256 of every input, kept in
# build/.sources-stamp), so `wrangler dev` starts at once; X402_REBUILD=1 builds anyway.
#
# Usage: bash scripts/build.sh [--out-dir DIR] [--features LIST]
#   --out-dir DIR    build into DIR instead of build/ (scripts/test.sh: build-panic/)
#   --features LIST  cargo features of the crate (scripts/test.sh: panic-test)
#
# The steps (each tool pinned: cargo by rust-toolchain/Cargo.lock, wasm-bindgen by setup.sh,
# esbuild and wasm-opt by package-lock.json):
# 1. cargo builds the crate's cdylib for wasm32-unknown-unknown, release profile;
# 2. wasm-bindgen writes the JS bindings for ES module workers (`--target module`), with the
#    state reset function and the abort handler that the entry's panic recovery uses;
# 3. esbuild bundles the entry with the bindings and their inline JS snippets into one minified
#    module; the wasm stays a separate module (`import … from "./index_bg.wasm"`);
# 4. wasm-opt optimises the wasm (-O) and drops its name section.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
out=build
features=
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir) out="${2:?--out-dir needs a directory}"; shift 2 ;;
    --features) features="${2:?--features needs a list}"; shift 2 ;;
    *) echo "build.sh: unknown argument $1 (usage: bash scripts/build.sh [--out-dir DIR] [--features LIST])" >&2; exit 2 ;;
  esac
done
# The inputs of the output: the crate (src/ with the entry, manifests, build script, cargo
# config), this script, and the settings that change the output.
stamp="$({
  find src .cargo Cargo.toml Cargo.lock build.rs scripts/build.sh -type f -print0 | sort -z | xargs -0 sha256sum
  echo "features=$features"
  echo "X402_KEEP_WASM_NAMES=${X402_KEEP_WASM_NAMES:-}"
} | sha256sum | cut -d' ' -f1)"
if [ -z "${X402_REBUILD:-}" ] && [ -f "$out/index_bg.wasm" ] && [ -f "$out/index.js" ] \
  && [ "$(cat "$out/.sources-stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "build: $out/ is up to date with the sources (X402_REBUILD=1 rebuilds)"
  exit 0
fi

# 1. The wasm. WASM_BINDGEN_USE_JS_SYS=1 makes wasm-bindgen's macros route futures through
# js_sys (the setting the `worker` crate's own build tool uses; a proc macro reads it, as an
# environment variable since --cfg does not reach host proc macros under --target).
WASM_BINDGEN_USE_JS_SYS=1 cargo build --lib --release --target wasm32-unknown-unknown --locked \
  ${features:+--features "$features"}
target_dir="$(cargo metadata --format-version 1 --no-deps --locked | node -e 'let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => console.log(JSON.parse(s).target_directory))')"
crate_wasm="$target_dir/wasm32-unknown-unknown/release/x402_edge_paywall.wasm"

# Everything is made in a staging directory beside $out, which replaces $out at the end: a
# failed build leaves the previous one as it was.
stage="$(mktemp -d "$ROOT/.build-stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

# 2. The bindings: $stage/bindgen/index.js (+ snippets/) and index_bg.wasm.
"$WASM_BINDGEN_BIN" "$crate_wasm" --out-dir "$stage/bindgen" --out-name index --target module \
  --no-typescript --experimental-reset-state-function --force-enable-abort-handler
# `--target module` imports the wasm as a source-phase import (`import source wasmModule from
# "./index_bg.wasm"`); workerd and wrangler take the plain default import of a .wasm module,
# which is the compiled `WebAssembly.Module` too.
bindings="$stage/bindgen/index.js"
[ "$(grep -c '^import source wasmModule from "./index_bg.wasm";$' "$bindings")" = 1 ] \
  || { echo "build: $bindings has no single 'import source wasmModule' line: another wasm-bindgen output shape?" >&2; exit 1; }
sed -i 's|^import source wasmModule from "./index_bg.wasm";$|import wasmModule from "./index_bg.wasm";|' "$bindings"

# 3. The entry module, beside the bindings it imports as ./index.js, bundled into one file.
# wasm-bindgen 0.2.130 names an inline snippet twice in its imports object (both keys point at
# the same module), which esbuild would print as a duplicate-key warning on every build.
cp src/edge/entry.mjs "$stage/bindgen/entry.mjs"
mkdir -p "$stage/out"
"$ESBUILD_BIN" "$stage/bindgen/entry.mjs" --bundle --format=esm --minify --log-level=warning --log-override:duplicate-object-key=silent \
  --external:./index_bg.wasm '--external:cloudflare:*' --outfile="$stage/out/index.js"

# 4. The wasm: optimised for size and speed (-O), as wasm-bindgen's output is unoptimised. The
# features are those the release wasm uses (rustc's wasm32 defaults, and exception handling for
# wasm-bindgen's catch wrappers), named rather than --all-features so that wasm-opt never emits a
# newer encoding than workerd reads. Without --debuginfo the name section (function names: about
# 32 KB gzip, used only by stack traces and profiles) is dropped; X402_KEEP_WASM_NAMES=1 keeps it,
# for bench/profile.mjs.
wasm_features=(mutable-globals sign-ext nontrapping-float-to-int bulk-memory multivalue reference-types exception-handling)
names=()
[ -n "${X402_KEEP_WASM_NAMES:-}" ] && names=(--debuginfo)
"$WASM_OPT_BIN" "$stage/bindgen/index_bg.wasm" -O "${wasm_features[@]/#/--enable-}" "${names[@]}" \
  -o "$stage/out/index_bg.wasm"

echo "$stamp" > "$stage/out/.sources-stamp"
rm -rf "$out"
mv "$stage/out" "$out"
