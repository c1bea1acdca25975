#!/usr/bin/env bash
# The project's test command (see README): start the real services, then run
# formatting, lints, the whole test suite against them, and the browser tests
# of the agent desktop.
#
#   scripts/test.sh               fmt check, clippy -D warnings, all tests
#   scripts/test.sh some_filter   the same, passing extra arguments to cargo test
#                                 (and without the browser tests)
#
# The services are left running for the next run (they are cheap and reused);
# stop them with `scripts/services.sh stop`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() {
  local name=$1 rc=0
  shift
  printf '==> %s\n' "$name"
  "$@" || rc=$?
  if [[ $rc -ne 0 ]]; then
    printf 'test.sh: FAILED at step "%s" (exit %d)\n' "$name" "$rc" >&2
    exit "$rc"
  fi
}

step "start services" scripts/services.sh start

# Export MAILROOM_TEST_* from the env file (plain KEY=VALUE lines).
env_text="$(scripts/services.sh env)"
while IFS='=' read -r key value; do
  [[ -n $key && $key != \#* ]] || continue
  export "$key=$value"
done <<<"$env_text"

step "cargo fmt --all -- --check" cargo fmt --all -- --check
step "cargo clippy --workspace --all-targets -- -D warnings" \
  cargo clippy --workspace --all-targets -- -D warnings
step "cargo test --workspace --all-targets $*" cargo test --workspace --all-targets "$@"
# The agent desktop in headless Debian chromium (docs/desktop.md): installs
# chromium and the npm packages if missing, runs tests/browser against the
# debug binary the step above built. Skipped when a filter was given.
if [[ $# -eq 0 ]]; then
  step "browser tests (scripts/browser.sh test)" scripts/browser.sh test
fi

printf 'test.sh: all steps passed (services left running; stop them with scripts/services.sh stop)\n'
