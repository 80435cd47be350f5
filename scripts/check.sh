#!/usr/bin/env bash
# Checks the paywall configuration of a wrangler.toml before deploying: the Worker's own parser
# (Config::from_vars) on the host, plus the bindings it needs and what only fits local use.
# Prints every problem with its line and a suggestion, then what each route charges.
#   bash scripts/check.sh [wrangler.toml]      (default: the project's wrangler.toml)
# Exit status: 0 without errors (warnings allowed), 1 with errors, 2 if the file cannot be read.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
file="${1:-$ROOT/wrangler.toml}"
export PATH="$HOME/.cargo/bin:$PATH"
exec cargo run --quiet --locked --manifest-path "$ROOT/Cargo.toml" --bin x402-check -- "$file"
