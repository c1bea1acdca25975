#!/usr/bin/env bash
# The agent desktop's browser tests (docs/desktop.md): headless Debian
# chromium driven by playwright-core, against a mailroom the tests start
# themselves, with real mail through the services of scripts/services.sh.
#
#   scripts/browser.sh install   Debian chromium (if /usr/bin/chromium is missing) and npm ci
#   scripts/browser.sh test [FILE...]   install, then run tests/browser/tests/*.test.js
#
# The tests run the debug binary target/debug/mailroom (built here if
# missing or stale) and read the services' addresses from
# ${MAILROOM_SERVICES_DIR:-/var/tmp/mailroom-services}/env, so run
# `scripts/services.sh start` first (scripts/test.sh does both).
# Screenshots of the main screens go to target/desk-screenshots/.
# `npx playwright install` cannot work here (no browser downloads): the
# tests launch /usr/bin/chromium (MAILROOM_CHROMIUM overrides it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf 'browser: %s\n' "$*"; }

install_chromium() {
  local bin="${MAILROOM_CHROMIUM:-/usr/bin/chromium}"
  [[ -x $bin ]] && return 0
  [[ $EUID -eq 0 ]] || {
    printf 'browser: ERROR: %s is missing; install Debian chromium (as root: apt-get install chromium)\n' "$bin" >&2
    exit 1
  }
  log "installing Debian chromium"
  mkdir -p target
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Use-Pty=0 chromium fonts-dejavu-core
  } >target/browser-apt.log 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    tail -n 30 target/browser-apt.log >&2
    printf 'browser: ERROR: apt-get install chromium failed (exit %d)\n' "$rc" >&2
    exit "$rc"
  fi
  log "installed: $("$bin" --version 2>/dev/null || echo chromium)"
}

install_npm() {
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
}

case "${1:-test}" in
  install)
    install_chromium
    install_npm
    ;;
  test)
    shift || true
    install_chromium
    install_npm
    # The binary the tests start: `cargo build` is a no-op when it is fresh
    # (after `cargo test --workspace --all-targets` it is).
    cargo build --bin mailroom --quiet
    cd tests/browser
    # Files may be given from the repository's root or from tests/browser.
    files=()
    for f in "$@"; do
      files+=("${f#tests/browser/}")
    done
    if [[ ${#files[@]} -eq 0 ]]; then
      files=(tests/*.test.js)
    fi
    # One test file at a time: the machine has two cores, and each file
    # runs a server and up to three browser contexts.
    exec node --test --test-concurrency=1 --test-timeout=240000 "${files[@]}"
    ;;
  *)
    printf 'usage: %s install | test [FILE...]\n' "$0" >&2
    exit 2
    ;;
esac
