#!/usr/bin/env bash
# One command: install what is needed, then run every test: host unit tests, the built wasm under
# Miniflare against the local stack, and the end-to-end run with the official client.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo test --locked
bash scripts/build.sh
node --test --test-concurrency=1 tests/*.test.mjs
