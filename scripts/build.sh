#!/usr/bin/env bash
# Builds the Worker (release wasm + JS shim) into build/ with worker-build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
worker-build --release
