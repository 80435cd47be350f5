#!/usr/bin/env bash
# One command: install what is needed, build the Worker, run the end-to-end demo on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh
bash scripts/build.sh
node scripts/demo.mjs
