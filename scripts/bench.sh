#!/usr/bin/env bash
# One command: installs what the benchmark needs (the project's setup, plus Debian's wrk), builds
# the Worker, and prints the side-by-side report (also written to bench/.build/report.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
if ! command -v wrk >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
source scripts/env.sh
bash scripts/build.sh >/dev/null
node bench/run.mjs
