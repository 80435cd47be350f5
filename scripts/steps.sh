# Sourced by the scripts: `step "title" command...` runs one step of a first run with its output
# in $X402_LOG (default .logs/setup.log) and prints one line for it: a spinner while it runs on a
# terminal, then "ok" with the time taken, or the log's last lines when it fails.
X402_LOG="${X402_LOG:-$ROOT/.logs/setup.log}"
mkdir -p "$(dirname "$X402_LOG")"
export X402_LOG
step() {
  local title="$1" start=$SECONDS pid status
  shift
  echo "== $title: $*" >> "$X402_LOG"
  if [ -t 1 ]; then
    "$@" >> "$X402_LOG" 2>&1 < /dev/null &
    pid=$!
    local frames='|/-\' i=0
    while kill -0 "$pid" 2> /dev/null; do
      printf '\r%s %s' "${frames:i++%4:1}" "$title"
      sleep 0.2
    done
    status=0
    wait "$pid" || status=$?
    printf '\r'
  else
    status=0
    "$@" >> "$X402_LOG" 2>&1 < /dev/null || status=$?
  fi
  if [ "$status" = 0 ]; then
    echo "ok $title ($((SECONDS - start)) s)"
  else
    echo "FAILED $title (exit $status); the last lines of $X402_LOG:" >&2
    tail -n 25 "$X402_LOG" >&2
    exit "$status"
  fi
}
