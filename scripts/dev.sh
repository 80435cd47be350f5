#!/usr/bin/env bash
# Runs the paywall locally in front of your own API: a local chain with test USDC, a facilitator
# (the official x402 logic) and `wrangler dev` with wrangler.toml's ROUTES in front of its
# ORIGIN_URL. Prints the URLs, a funded (public, test-only) payer key and a command that pays a
# route; Ctrl-C stops everything it started. Options: --origin URL (instead of ORIGIN_URL),
# --routes JSON|@file.json (instead of ROUTES), --port N (the paywall's; default 8787).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh
source scripts/steps.sh
step "Worker build (skipped when build/ is up to date)" bash scripts/build.sh
# node replaces this shell, so Ctrl-C (SIGINT) reaches it: scripts/dev.mjs stops wrangler dev
# (with its workerd), the facilitator and anvil before it exits.
exec node scripts/dev.mjs "$@"
