#!/usr/bin/env bash
# Installs everything the build, demo and tests need, at pinned versions. Idempotent: a tool
# already installed at the pinned version is left as it is. The Rust tools go to
# $X402_TOOLS_ROOT (default: .tools/ in this clone, see env.sh), never over a global install.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
rustup target add wasm32-unknown-unknown >/dev/null
have() { "$1" --version 2>/dev/null | grep -q "$2"; }
have "$X402_TOOLS_ROOT/bin/worker-build" "0.8.7" || cargo install --root "$X402_TOOLS_ROOT" worker-build --version 0.8.7 --locked
# wasm-bindgen-cli must equal the wasm-bindgen crate version in Cargo.lock. --locked is left off
# on purpose: tried again (issue 17), `cargo install wasm-bindgen-cli --version 0.2.130 --locked`
# fails because its lock file pins webpki-roots 1.0.11, which the registry here lacks (1.0.10 is
# its newest). The version itself is pinned either way.
have "$X402_TOOLS_ROOT/bin/wasm-bindgen" "0.2.130" || cargo install --root "$X402_TOOLS_ROOT" wasm-bindgen-cli --version 0.2.130
stamp="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.x402-lock-stamp 2>/dev/null)" != "$stamp" ]; then
  # `npm install` rather than `npm ci`: npm 11 leaves other platforms' optional packages of
  # nested dependencies (workerd, esbuild) out of the lock file, which `npm ci` then rejects.
  # The lock file still pins every version that is installed here.
  npm install --no-audit --no-fund
  sha256sum package-lock.json | cut -d' ' -f1 > node_modules/.x402-lock-stamp
fi
# Debian's Chromium for the browser tests (tests/paywall.test.mjs drive it with playwright-core;
# no browser download from elsewhere works offline). Root installs it; otherwise it says how.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
  else
    echo "setup: the browser tests need Debian's chromium: sudo apt-get install -y chromium" >&2
  fi
fi
