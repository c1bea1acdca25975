#!/usr/bin/env bash
# Measures the foundation's figures (docs/performance.md):
#   - clean release build time (in a fresh target dir, so nothing is cached);
#   - the release binary's size;
#   - time from exec to the first 200 from /ready (default config, SQLite);
#   - idle RSS of the server after start.
# Usage: scripts/measure-foundation.sh [--no-build | --bin PATH]
#   --no-build reuses target/release/mailroom; --bin measures a given binary.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/mailroom
if [[ "${1:-}" == "--bin" ]]; then
  bin=$2
elif [[ "${1:-}" != "--no-build" ]]; then
  tdir=$(mktemp -d /tmp/mailroom-build.XXXXXX)
  start=$(date +%s.%N)
  CARGO_TARGET_DIR="$tdir" cargo build --release --locked --bin mailroom >/dev/null 2>&1
  end=$(date +%s.%N)
  printf 'clean release build: %.0f s on %s cores\n' "$(echo "$end - $start" | bc)" "$(nproc)"
  bin="$tdir/release/mailroom"
fi
printf 'binary size: %s bytes (%s MiB)\n' "$(stat -c %s "$bin")" "$(echo "scale=1; $(stat -c %s "$bin")/1048576" | bc)"

bin=$(realpath "$bin")
work=$(mktemp -d /tmp/mailroom-run.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cd "$work"
start=$(date +%s%N)
MAILROOM__HTTP__LISTEN="127.0.0.1:$port" MAILROOM__LOG__LEVEL=warn "$bin" serve >/dev/null 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
  kill -0 $pid 2>/dev/null || { echo "server died"; exit 1; }
  sleep 0.005
done
end=$(date +%s%N)
echo "start to /ready (fresh SQLite, first start incl. migrations and bootstrap admin): $(( (end - start) / 1000000 )) ms"
kill -TERM $pid; wait $pid || true
# Second start: the database exists.
start=$(date +%s%N)
MAILROOM__HTTP__LISTEN="127.0.0.1:$port" MAILROOM__LOG__LEVEL=warn "$bin" serve >/dev/null 2>&1 &
pid=$!
until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
  kill -0 $pid 2>/dev/null || { echo "server died"; exit 1; }
  sleep 0.005
done
end=$(date +%s%N)
echo "start to /ready (existing database): $(( (end - start) / 1000000 )) ms"
sleep 2
echo "idle RSS after start: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
