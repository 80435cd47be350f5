#!/usr/bin/env bash
# Checks the paywall configuration of a wrangler.toml before deploying: the Worker's own parser
# (Config::from_vars) on the host, plus the bindings it needs and what only fits local use.
# Prints every problem with its line and a suggestion, then what each route charges.
#   bash scripts/check.sh [--env NAME] [wrangler.toml]   (default: the project's wrangler.toml)
# With --env NAME: the configuration of [env.NAME] as `wrangler deploy --env NAME` builds it
# (vars and bindings are not inherited from the top level).
# Exit status: 0 without errors (warnings allowed), 1 with errors, 2 if the file cannot be read.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
args=("$@")
file_given=0
skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case "$a" in
    --env|-e) skip=1 ;;
    -*) ;;
    *) file_given=1 ;;
  esac
done
[ "$file_given" = 1 ] || args+=("$ROOT/wrangler.toml")
export PATH="$HOME/.cargo/bin:$PATH"
if [ ! -x "${CARGO_TARGET_DIR:-$ROOT/target}/debug/x402-check" ]; then
  echo "building the check (first run only, a few minutes)..." >&2
fi
exec cargo run --quiet --locked --manifest-path "$ROOT/Cargo.toml" --bin x402-check -- "${args[@]}"
