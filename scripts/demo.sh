#!/usr/bin/env bash
# One command: install what is needed, build the Worker, run the end-to-end demo on 127.0.0.1.
# Before the demo speaks, one line per step; the full output is in .logs/setup.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh
source scripts/steps.sh
step "Worker build (release wasm; a few minutes the first time)" bash scripts/build.sh
node scripts/demo.mjs
