#!/usr/bin/env bash
# The one source of the figures in docs/benchmarks.md and README.md: measures the current build
# and rewrites their generated blocks (scripts/figures.mjs), so no figure is typed by hand.
#
#   bash scripts/figures.sh [--reuse-bench] [--no-demo] [--fresh-clone]
#
# Runs, in order: the release build and scripts/size.sh (wasm and paywall page, raw and gzip -9);
# scripts/bench.sh (about 4 minutes; its report is bench/.build/report.md), or with --reuse-bench
# the report a previous bench run left; `time bash scripts/demo.sh` (unless --no-demo); with
# --fresh-clone, the test command on a fresh clone of HEAD in a temporary directory (about
# 20 minutes). Then writes the figures and prints `git diff --stat` of the two files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
reuse=0 demo=1 fresh=0
for arg in "$@"; do
  case "$arg" in
    --reuse-bench) reuse=1 ;;
    --no-demo) demo=0 ;;
    --fresh-clone) fresh=1 ;;
    *) echo "usage: bash scripts/figures.sh [--reuse-bench] [--no-demo] [--fresh-clone]" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
source scripts/env.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bash scripts/build.sh > /dev/null
bash scripts/size.sh | tee "$work/size.txt"
report=bench/.build/report.md
if [ "$reuse" = 1 ]; then
  [ -f "$report" ] || { echo "--reuse-bench: no $report (run bash scripts/bench.sh)" >&2; exit 1; }
  # A report older than the wasm measured another build.
  [ "$report" -nt build/index_bg.wasm ] || echo "warning: $report is older than build/index_bg.wasm" >&2
else
  bash scripts/bench.sh > /dev/null
fi

timings="{}"
if [ "$demo" = 1 ]; then
  start=$SECONDS
  bash scripts/demo.sh > "$work/demo.log" 2>&1 || { tail -n 30 "$work/demo.log" >&2; exit 1; }
  timings=$(node -e 'const t=JSON.parse(process.argv[1]); t.demoSeconds=Number(process.argv[2]); console.log(JSON.stringify(t))' "$timings" "$((SECONDS - start))")
fi
if [ "$fresh" = 1 ]; then
  # HEAD as committed (uncommitted changes are not measured).
  git clone -q --no-checkout . "$work/clone"
  git -C "$work/clone" checkout -q "$(git rev-parse HEAD)"
  start=$SECONDS
  (cd "$work/clone" && bash .ci/run) > "$work/fresh.log" 2>&1 || { tail -n 30 "$work/fresh.log" >&2; exit 1; }
  timings=$(node -e 'const t=JSON.parse(process.argv[1]); t.freshCloneSeconds=Number(process.argv[2]); console.log(JSON.stringify(t))' "$timings" "$((SECONDS - start))")
fi
echo "$timings" > "$work/timings.json"

node scripts/figures.mjs --size "$work/size.txt" --report "$report" --timings "$work/timings.json" --commit "$(git rev-parse --short HEAD)"
git --no-pager diff --stat -- docs/benchmarks.md README.md
