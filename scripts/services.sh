#!/usr/bin/env bash
# Install (if missing) and run the real services mailroom's tests use, on
# loopback only: Postgres, Redis, Dovecot (IMAP + LMTP) and Postfix (SMTP).
#
#   scripts/services.sh start    install what is missing, start, wait, write env file
#   scripts/services.sh stop     stop what `start` started (idempotent)
#   scripts/services.sh status   one line per service (exit 1 if any is down)
#   scripts/services.sh env      print the env file (KEY=VALUE lines)
#   scripts/services.sh check    smoke test: SMTP in, IMAP IDLE + INBOX out, IMAPS + STARTTLS login
#
# State (configs, data, logs, pid files, env file) lives in
# ${MAILROOM_SERVICES_DIR:-/var/tmp/mailroom-services}. See scripts/README.md.
set -euo pipefail

STATE="${MAILROOM_SERVICES_DIR:-/var/tmp/mailroom-services}"
case "$STATE" in
  /*) ;;
  *) STATE="$PWD/$STATE" ;;
esac
STATE="${STATE%/}"

# Set MAILROOM_SERVICES_PG=private to ignore a Postgres on 127.0.0.1:5432.
PG_CHOICE="${MAILROOM_SERVICES_PG:-auto}"
TIMEOUT="${MAILROOM_SERVICES_TIMEOUT:-30}"

EXTERNAL_PG_PORT=5432
PRIVATE_PG_PORT=15432
REDIS_PORT=16379
IMAP_PORT=10143
IMAPS_PORT=10993
LMTP_PORT=10024
SMTP_PORT=10025
MAIL_DOMAIN=example.test
MAIL_PASSWORD=pw
VMAIL_UID=5000

LOG_DIR="$STATE/log"
STARTED_FILE="$STATE/started"
ENV_FILE="$STATE/env"
PG_DIR="$STATE/pg"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$LOG_DIR/postgres.log"
REDIS_DIR="$STATE/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$LOG_DIR/redis.log"
DOVECOT_DIR="$STATE/dovecot"
DOVECOT_CONF="$DOVECOT_DIR/dovecot.conf"
DOVECOT_RUN="$DOVECOT_DIR/run"
DOVECOT_LOG="$LOG_DIR/dovecot.log"
# Self-signed certificate for IMAPS and STARTTLS, generated once.
DOVECOT_TLS="$DOVECOT_DIR/tls"
DOVECOT_CERT="$DOVECOT_TLS/cert.pem"
DOVECOT_KEY="$DOVECOT_TLS/key.pem"
MAIL_ROOT="$STATE/mail"
POSTFIX_DIR="$STATE/postfix"
POSTFIX_CONF="$POSTFIX_DIR/etc"
POSTFIX_SPOOL="$POSTFIX_DIR/spool"
POSTFIX_DATA="$POSTFIX_DIR/data"
POSTFIX_LOG="$LOG_DIR/postfix.log"

log() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: warning: %s\n' "$*" >&2; }
die() {
  printf 'services: ERROR: %s\n' "$*" >&2
  exit 1
}

require_root() {
  [[ $EUID -eq 0 ]] || die "must run as root (it installs packages and starts daemons as system users)"
}

# --- small helpers ---------------------------------------------------------

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

pg_bin_dir() {
  local d
  d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
  printf '%s' "$d"
}

as_postgres() {
  (cd / && runuser -u postgres -- "$@")
}

# Read the first line a server sends on connect; send $2 afterwards so the
# server sees a clean goodbye. Prints the line, fails if nothing answers.
greeting() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    IFS= read -r -t 4 line <&3 || exit 1
    printf "%s\r\n" "$2" >&3 2>/dev/null || true
    printf "%s\n" "$line"
  ' _ "$1" "$2" 2>/dev/null
}

# Run a command that leaves a daemon behind, with no inherited descriptors
# beyond stdin/stdout/stderr (a daemon holding a caller's pipe open can make
# the caller, e.g. a CI runner, wait forever).
run_detached() {
  (
    local fd
    cd /
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"
      if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
        eval "exec $fd>&-" 2>/dev/null || true
      fi
    done
    exec "$@"
  )
}

port_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

port_owner() {
  ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1 || true
}

pid_alive() {
  local f=$1 pid
  [[ -s $f ]] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# write_if_changed PATH CONTENT: sets CHANGED=1 when the file was (re)written.
CHANGED=0
write_if_changed() {
  local path=$1 content=$2
  if [[ -f $path ]] && [[ "$(cat "$path")" == "$content" ]]; then
    return 0
  fi
  printf '%s\n' "$content" >"$path.tmp"
  mv -f "$path.tmp" "$path"
  CHANGED=1
}

mark_started() {
  touch "$STARTED_FILE"
  grep -qx "$1" "$STARTED_FILE" || printf '%s\n' "$1" >>"$STARTED_FILE"
}

unmark_started() {
  [[ -f $STARTED_FILE ]] || return 0
  grep -vx "$1" "$STARTED_FILE" >"$STARTED_FILE.tmp" || true
  mv -f "$STARTED_FILE.tmp" "$STARTED_FILE"
}

was_started() {
  [[ -f $STARTED_FILE ]] && grep -qx "$1" "$STARTED_FILE"
}

show_log() {
  local f=$1
  if [[ -f $f ]]; then
    printf -- '--- last lines of %s ---\n' "$f" >&2
    tail -n 30 "$f" >&2 || true
    printf -- '--- end of %s ---\n' "$f" >&2
  else
    printf 'services: (no log file %s)\n' "$f" >&2
  fi
}

# --- service probes ----------------------------------------------------------

pg_private_running() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 1
  local bin
  bin="$(pg_bin_dir)"
  [[ -n $bin ]] || return 1
  as_postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_external_usable() {
  command -v pg_isready >/dev/null && command -v psql >/dev/null || return 1
  pg_isready -q -h 127.0.0.1 -p "$EXTERNAL_PG_PORT" -t 3 || return 1
  PGCONNECT_TIMEOUT=3 psql -w -h 127.0.0.1 -p "$EXTERNAL_PG_PORT" -U postgres -d postgres \
    -Atqc 'select 1' </dev/null >/dev/null 2>&1
}

# Prints "private" or "external". Our own running cluster wins (stay
# consistent with the env file), then a usable Postgres on 5432.
pg_mode() {
  if pg_private_running; then
    echo private
  elif [[ $PG_CHOICE != private ]] && pg_external_usable; then
    echo external
  else
    echo private
  fi
}

pg_port() {
  if [[ $1 == external ]]; then echo "$EXTERNAL_PG_PORT"; else echo "$PRIVATE_PG_PORT"; fi
}

pg_ready() {
  pg_isready -q -h 127.0.0.1 -p "$1" -t 2
}

redis_running() {
  pid_alive "$REDIS_PID"
}

redis_ready() {
  [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

dovecot_running() {
  pid_alive "$DOVECOT_RUN/master.pid"
}

imap_ready() {
  [[ "$(greeting "$IMAP_PORT" 'a LOGOUT')" == '* OK'* ]]
}

# The greeting over TLS (the certificate is self-signed, so it is not verified).
imaps_ready() {
  local line
  line="$(printf 'a LOGOUT\r\n' | timeout 5 openssl s_client -connect "127.0.0.1:$IMAPS_PORT" \
    -quiet -verify_quiet 2>/dev/null | head -n 1)" || true
  [[ $line == '* OK'* ]]
}

lmtp_ready() {
  [[ "$(greeting "$LMTP_PORT" 'QUIT')" == 220* ]]
}

postfix_running() {
  [[ -f $POSTFIX_CONF/main.cf ]] && command -v postfix >/dev/null &&
    postfix -c "$POSTFIX_CONF" status >/dev/null 2>&1
}

smtp_ready() {
  [[ "$(greeting "$SMTP_PORT" 'QUIT')" == 220* ]]
}

# --- installation --------------------------------------------------------------

install_missing() {
  local mode=$1
  local -a pkgs=()
  if [[ $mode == private && -z "$(pg_bin_dir)" ]]; then
    pkgs+=(postgresql)
  fi
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    pkgs+=(redis-server)
  fi
  pkg_installed dovecot-imapd || pkgs+=(dovecot-imapd)
  pkg_installed dovecot-lmtpd || pkgs+=(dovecot-lmtpd)
  if ! command -v postfix >/dev/null || ! pkg_installed postfix; then
    pkgs+=(postfix)
  fi
  command -v openssl >/dev/null || pkgs+=(openssl)
  # The PDF transcript tests read the PDFs back with pdftotext.
  command -v pdftotext >/dev/null || pkgs+=(poppler-utils)
  [[ ${#pkgs[@]} -gt 0 ]] || return 0

  log "installing: ${pkgs[*]}"
  # Keep the packages' own init scripts from starting system-wide daemons.
  local own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Use-Pty=0 "${pkgs[@]}"
  } >"$LOG_DIR/apt.log" 2>&1 || rc=$?
  [[ $own_policy -eq 0 ]] || rm -f /usr/sbin/policy-rc.d
  if [[ $rc -ne 0 ]]; then
    show_log "$LOG_DIR/apt.log"
    die "apt-get install ${pkgs[*]} failed (exit $rc)"
  fi
  log "installed: ${pkgs[*]}"
  stop_system_instances "${pkgs[@]}"
}

# If a package's post-install script started a system-wide daemon anyway
# (e.g. on a machine with systemd), stop and disable it: ours run apart.
stop_system_instances() {
  local p
  for p in "$@"; do
    case "$p" in
      dovecot-*)
        if pid_alive /run/dovecot/master.pid; then
          log "stopping the system-wide dovecot started by its package"
          dovecot stop >/dev/null 2>&1 || true
          if command -v systemctl >/dev/null; then
            systemctl disable --now dovecot >/dev/null 2>&1 || true
          fi
        fi
        ;;
      postfix)
        if [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
          log "stopping the system-wide postfix started by its package"
          postfix stop >/dev/null 2>&1 || true
          if command -v systemctl >/dev/null; then
            systemctl disable --now postfix >/dev/null 2>&1 || true
          fi
        fi
        ;;
    esac
  done
}

ensure_vmail_user() {
  getent group vmail >/dev/null || groupadd -r -g "$VMAIL_UID" vmail 2>/dev/null || groupadd -r vmail
  if ! getent passwd vmail >/dev/null; then
    useradd -r -u "$VMAIL_UID" -g vmail -d /nonexistent -s /usr/sbin/nologin vmail 2>/dev/null ||
      useradd -r -g vmail -d /nonexistent -s /usr/sbin/nologin vmail
    log "created system user vmail"
  fi
}

# A self-signed certificate for localhost and 127.0.0.1, made once and kept
# (a new one on every start would change what a test may have pinned).
ensure_tls_cert() {
  [[ -s $DOVECOT_CERT && -s $DOVECOT_KEY ]] && return 0
  mkdir -p "$DOVECOT_TLS"
  chmod 755 "$DOVECOT_TLS"
  log "dovecot: generating a self-signed certificate in $DOVECOT_TLS"
  if ! (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$DOVECOT_KEY.tmp" -out "$DOVECOT_CERT.tmp" -days 3650 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1") >"$LOG_DIR/openssl.log" 2>&1; then
    show_log "$LOG_DIR/openssl.log"
    die "could not generate the test certificate"
  fi
  chmod 644 "$DOVECOT_CERT.tmp"
  mv -f "$DOVECOT_KEY.tmp" "$DOVECOT_KEY"
  mv -f "$DOVECOT_CERT.tmp" "$DOVECOT_CERT"
}

# --- configuration ---------------------------------------------------------------

dovecot_config() {
  cat <<EOF
# Generated by scripts/services.sh on every start; edits are overwritten.
# Test IMAP/LMTP server: any user@$MAIL_DOMAIN logs in with password "$MAIL_PASSWORD".
base_dir = $DOVECOT_RUN
state_dir = $DOVECOT_DIR/state
log_path = $DOVECOT_LOG
protocols = imap lmtp
listen = 127.0.0.1
# TLS on the IMAPS port and STARTTLS on the IMAP port, with a self-signed
# certificate. "yes", not "required": plain LOGIN still works on the IMAP port.
ssl = yes
ssl_cert = <$DOVECOT_CERT
ssl_key = <$DOVECOT_KEY
disable_plaintext_auth = no
auth_mechanisms = plain login
# Tests log in with wrong passwords on purpose: answer them at once
# (Dovecot otherwise delays each failure by 2 s). The anvil listener below
# turns off the growing penalty per client address (up to 15 s per login).
auth_failure_delay = 0
auth_username_format = %Lu
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
mail_uid = vmail
mail_gid = vmail
first_valid_uid = 100
hostname = mailroom.localhost
postmaster_address = postmaster@$MAIL_DOMAIN
default_process_limit = 1000
default_client_limit = 10000

# Static password and home: any address works without editing any file.
passdb {
  driver = static
  args = password=$MAIL_PASSWORD
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=$MAIL_ROOT/%d/%n allow_all_users=yes
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
  }
  # High-performance mode: a few login processes serve many connections.
  service_count = 0
  process_min_avail = 2
}
service imap {
  process_limit = 1000
}
# No authentication penalty: the auth process cannot open this socket, and
# without it does not track failures (Dovecot's documented way to turn it off).
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
protocol imap {
  mail_max_userip_connections = 1000
}
EOF
}

postfix_main_cf() {
  cat <<EOF
# Generated by scripts/services.sh on every start; edits are overwritten.
# Test SMTP server: accepts mail for any address of $MAIL_DOMAIN and hands it
# to Dovecot over LMTP. Nothing else is ever delivered: no mail leaves.
compatibility_level = 3.6
queue_directory = $POSTFIX_SPOOL
data_directory = $POSTFIX_DATA
maillog_file = $POSTFIX_LOG
maillog_file_prefixes = $LOG_DIR
myhostname = mailroom.localhost
mydomain = localhost
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
virtual_alias_maps =
virtual_mailbox_domains = $MAIL_DOMAIN
virtual_mailbox_maps = static:OK
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
local_transport = error:local delivery is disabled on this test server
relay_transport = error:relaying is disabled on this test server
default_transport = error:only $MAIL_DOMAIN is delivered on this test server
smtp_dns_support_level = disabled
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
message_size_limit = 104857600
mailbox_size_limit = 0
virtual_mailbox_limit = 0
in_flow_delay = 0
default_process_limit = 500
lmtp_destination_concurrency_limit = 50
biff = no
append_dot_mydomain = no
smtpd_banner = \$myhostname ESMTP mailroom test server
EOF
}

postfix_master_cf() {
  cat <<EOF
# Generated by scripts/services.sh on every start; edits are overwritten.
# The stock Postfix 3.7 services, all with chroot n, and SMTP only on
# 127.0.0.1:$SMTP_PORT.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$SMTP_PORT inet n    -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
        -o syslog_name=postfix/\$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

prepare_dirs() {
  mkdir -p "$STATE" "$LOG_DIR" "$REDIS_DIR" "$DOVECOT_DIR" "$DOVECOT_DIR/state" \
    "$MAIL_ROOT" "$POSTFIX_CONF" "$POSTFIX_SPOOL" "$POSTFIX_DATA"
  # Dovecot's and Postfix's unprivileged users walk these paths.
  chmod 755 "$STATE" "$LOG_DIR" "$DOVECOT_DIR" "$POSTFIX_DIR" "$POSTFIX_CONF" "$POSTFIX_SPOOL"
  chown vmail:vmail "$MAIL_ROOT"
  chmod 750 "$MAIL_ROOT"
  chown postfix:postfix "$POSTFIX_DATA"
  chmod 700 "$POSTFIX_DATA"
}

# --- start -----------------------------------------------------------------------

start_postgres() {
  local mode=$1 bin
  if [[ $mode == external ]]; then
    log "postgres: using the server already on 127.0.0.1:$EXTERNAL_PG_PORT (not managed here)"
    return 0
  fi
  bin="$(pg_bin_dir)"
  [[ -n $bin ]] || die "postgres server binaries not found under /usr/lib/postgresql"
  if pg_private_running; then
    log "postgres: already running on 127.0.0.1:$PRIVATE_PG_PORT"
    mark_started postgres
    return 0
  fi
  if port_open "$PRIVATE_PG_PORT"; then
    die "port $PRIVATE_PG_PORT is taken by another process: $(port_owner "$PRIVATE_PG_PORT")"
  fi
  mkdir -p "$PG_DIR" "$PG_SOCK"
  chown postgres:postgres "$PG_DIR" "$PG_SOCK"
  chmod 700 "$PG_DIR"
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    log "postgres: initdb $PG_DATA"
    if ! as_postgres "$bin/initdb" -D "$PG_DATA" --auth=trust -U postgres -E UTF8 \
      --locale=C.UTF-8 >"$LOG_DIR/initdb.log" 2>&1; then
      show_log "$LOG_DIR/initdb.log"
      die "initdb failed"
    fi
  fi
  touch "$PG_LOG"
  chown postgres:postgres "$PG_LOG"
  log "postgres: starting private cluster on 127.0.0.1:$PRIVATE_PG_PORT"
  # Throwaway test cluster: durability is traded for speed.
  if ! run_detached runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" \
    -o "-p $PRIVATE_PG_PORT -c listen_addresses=127.0.0.1 -k $PG_SOCK -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >"$LOG_DIR/pg_ctl.out" 2>&1; then
    cat "$LOG_DIR/pg_ctl.out" >&2
    show_log "$PG_LOG"
    die "postgres did not start"
  fi
  mark_started postgres
}

start_redis() {
  if redis_running; then
    log "redis: already running on 127.0.0.1:$REDIS_PORT"
    mark_started redis
    return 0
  fi
  if port_open "$REDIS_PORT"; then
    die "port $REDIS_PORT is taken by another process: $(port_owner "$REDIS_PORT")"
  fi
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  if ! run_detached redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --save '' --appendonly no --dir "$REDIS_DIR" --pidfile "$REDIS_PID" \
    --logfile "$REDIS_LOG" --maxclients 10000 </dev/null >/dev/null 2>&1; then
    show_log "$REDIS_LOG"
    die "redis did not start"
  fi
  mark_started redis
}

start_dovecot() {
  local changed=$1
  if dovecot_running; then
    if [[ $changed -eq 1 ]]; then
      log "dovecot: config changed, reloading"
      dovecot -c "$DOVECOT_CONF" reload
    else
      log "dovecot: already running (imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT, lmtp 127.0.0.1:$LMTP_PORT)"
    fi
    mark_started dovecot
    return 0
  fi
  local p
  for p in "$IMAP_PORT" "$IMAPS_PORT" "$LMTP_PORT"; do
    if port_open "$p"; then
      die "port $p is taken by another process: $(port_owner "$p")"
    fi
  done
  log "dovecot: starting (imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT, lmtp 127.0.0.1:$LMTP_PORT)"
  local out="$LOG_DIR/dovecot.start.out" hard rc=0
  # Many connections in load tests: raise the open-file limit to the hard one.
  # Output goes to a file: the daemon keeps its stderr open.
  hard="$(ulimit -Hn)"
  [[ $hard != unlimited ]] || hard=65536
  (ulimit -n "$hard" 2>/dev/null || true
    run_detached dovecot -c "$DOVECOT_CONF") </dev/null >"$out" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$out" >&2
    show_log "$DOVECOT_LOG"
    die "dovecot did not start (exit $rc)"
  fi
  mark_started dovecot
}

start_postfix() {
  local changed=$1
  if postfix_running; then
    if [[ $changed -eq 1 ]]; then
      log "postfix: config changed, reloading"
      postfix -c "$POSTFIX_CONF" reload >/dev/null 2>&1
    else
      log "postfix: already running (smtp 127.0.0.1:$SMTP_PORT)"
    fi
    mark_started postfix
    return 0
  fi
  if port_open "$SMTP_PORT"; then
    die "port $SMTP_PORT is taken by another process: $(port_owner "$SMTP_PORT")"
  fi
  log "postfix: starting (smtp 127.0.0.1:$SMTP_PORT)"
  local out="$LOG_DIR/postfix.start.out" rc=0
  run_detached postfix -c "$POSTFIX_CONF" start </dev/null >"$out" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$out" >&2
    show_log "$POSTFIX_LOG"
    die "postfix did not start (exit $rc)"
  fi
  mark_started postfix
}

# wait_for NAME LOGFILE CHECK...: poll CHECK until it succeeds or the deadline.
wait_for() {
  local name=$1 logfile=$2
  shift 2
  while ! "$@"; do
    if ((SECONDS >= DEADLINE)); then
      show_log "$logfile"
      die "$name is not answering after ${TIMEOUT}s"
    fi
    sleep 0.1
  done
}

write_env() {
  local port=$1
  CHANGED=0
  write_if_changed "$ENV_FILE" "MAILROOM_TEST_PG_URL=postgres://postgres@127.0.0.1:$port/postgres
MAILROOM_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
MAILROOM_TEST_IMAP_ADDR=127.0.0.1:$IMAP_PORT
MAILROOM_TEST_IMAPS_ADDR=127.0.0.1:$IMAPS_PORT
MAILROOM_TEST_SMTP_ADDR=127.0.0.1:$SMTP_PORT
MAILROOM_TEST_MAIL_DOMAIN=$MAIL_DOMAIN
MAILROOM_TEST_MAIL_PASSWORD=$MAIL_PASSWORD
MAILROOM_TEST_DOVECOT_CONF=$DOVECOT_CONF"
}

cmd_start() {
  require_root
  local t0=$SECONDS mode port
  mkdir -p "$STATE" "$LOG_DIR"

  mode="$(pg_mode)"
  install_missing "$mode"
  ensure_vmail_user
  prepare_dirs
  ensure_tls_cert

  CHANGED=0
  write_if_changed "$DOVECOT_CONF" "$(dovecot_config)"
  local dovecot_changed=$CHANGED
  CHANGED=0
  write_if_changed "$POSTFIX_CONF/main.cf" "$(postfix_main_cf)"
  write_if_changed "$POSTFIX_CONF/master.cf" "$(postfix_master_cf)"
  local postfix_changed=$CHANGED

  start_postgres "$mode"
  start_redis
  start_dovecot "$dovecot_changed"
  start_postfix "$postfix_changed"

  port="$(pg_port "$mode")"
  DEADLINE=$((SECONDS + TIMEOUT))
  wait_for postgres "$PG_LOG" pg_ready "$port"
  wait_for redis "$REDIS_LOG" redis_ready
  wait_for "dovecot imap" "$DOVECOT_LOG" imap_ready
  wait_for "dovecot imaps" "$DOVECOT_LOG" imaps_ready
  wait_for "dovecot lmtp" "$DOVECOT_LOG" lmtp_ready
  wait_for postfix "$POSTFIX_LOG" smtp_ready

  write_env "$port"
  log "all services answer (postgres :$port, redis :$REDIS_PORT, imap :$IMAP_PORT, imaps :$IMAPS_PORT, lmtp :$LMTP_PORT, smtp :$SMTP_PORT) in $((SECONDS - t0))s"
  log "env file: $ENV_FILE"
}

# --- stop ------------------------------------------------------------------------

# wait_gone NAME CHECK...: wait until CHECK fails (the service has exited).
wait_gone() {
  local name=$1 i
  shift
  for ((i = 0; i < 200; i++)); do
    "$@" || return 0
    sleep 0.1
  done
  warn "$name still running after 20s"
}

cmd_stop() {
  require_root
  if was_started postfix; then
    if postfix_running; then
      log "postfix: stopping"
      postfix -c "$POSTFIX_CONF" stop >/dev/null 2>&1 || true
      wait_gone postfix postfix_running
    fi
    unmark_started postfix
  fi
  if was_started dovecot; then
    if dovecot_running; then
      log "dovecot: stopping"
      dovecot -c "$DOVECOT_CONF" stop >/dev/null 2>&1 || true
      wait_gone dovecot dovecot_running
    fi
    unmark_started dovecot
  fi
  if was_started redis; then
    if redis_running; then
      log "redis: stopping"
      redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
      wait_gone redis redis_running
    fi
    unmark_started redis
  fi
  if was_started postgres; then
    if pg_private_running; then
      log "postgres: stopping private cluster"
      as_postgres "$(pg_bin_dir)/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null || true
    fi
    unmark_started postgres
  fi
  log "stopped (a Postgres not started here is left alone)"
}

# --- status / env / check ------------------------------------------------------------

cmd_status() {
  local down=0 line
  if pg_private_running && pg_ready "$PRIVATE_PG_PORT"; then
    line="running  127.0.0.1:$PRIVATE_PG_PORT (private cluster $PG_DATA)"
  elif command -v pg_isready >/dev/null && pg_ready "$EXTERNAL_PG_PORT"; then
    line="running  127.0.0.1:$EXTERNAL_PG_PORT (external, not managed here)"
  else
    line="down"
    down=1
  fi
  printf '%-9s %s\n' postgres "$line"

  if redis_running && redis_ready; then
    line="running  127.0.0.1:$REDIS_PORT (pid $(tr -dc '0-9' <"$REDIS_PID"))"
  else
    line="down"
    down=1
  fi
  printf '%-9s %s\n' redis "$line"

  if dovecot_running && imap_ready && imaps_ready && lmtp_ready; then
    line="running  imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT, lmtp 127.0.0.1:$LMTP_PORT (pid $(tr -dc '0-9' <"$DOVECOT_RUN/master.pid"))"
  else
    line="down"
    down=1
  fi
  printf '%-9s %s\n' dovecot "$line"

  if postfix_running && smtp_ready; then
    line="running  smtp 127.0.0.1:$SMTP_PORT"
  else
    line="down"
    down=1
  fi
  printf '%-9s %s\n' postfix "$line"
  return "$down"
}

cmd_env() {
  [[ -f $ENV_FILE ]] || die "no env file at $ENV_FILE: run 'scripts/services.sh start' first"
  cat "$ENV_FILE"
}

cmd_check() {
  command -v python3 >/dev/null || die "python3 is needed for the check"
  SMTP_PORT="$SMTP_PORT" IMAP_PORT="$IMAP_PORT" IMAPS_PORT="$IMAPS_PORT" MAIL_DOMAIN="$MAIL_DOMAIN" \
    MAIL_PASSWORD="$MAIL_PASSWORD" python3 - <<'PY'
import imaplib, os, secrets, smtplib, socket, ssl, sys, time
from email.message import EmailMessage

smtp_port = int(os.environ["SMTP_PORT"])
imap_port = int(os.environ["IMAP_PORT"])
imaps_port = int(os.environ["IMAPS_PORT"])
domain = os.environ["MAIL_DOMAIN"]
password = os.environ["MAIL_PASSWORD"]
token = secrets.token_hex(8)
addr = f"check-{token}@{domain}"
subject = f"services check {token}"
DEADLINE_S = 10.0

def fail(msg):
    print(f"check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)

# 1. An IMAP session that IDLEs on the (still empty) INBOX of the new address.
try:
    idler = imaplib.IMAP4("127.0.0.1", imap_port, timeout=5)
    idler.login(addr, password)
    typ, _ = idler.select("INBOX")
    if typ != "OK":
        fail(f"IMAP SELECT INBOX as {addr}: {typ}")
    idle_tag = idler._new_tag()
    idler.send(idle_tag + b" IDLE\r\n")
    cont = idler.readline()
    if not cont.startswith(b"+"):
        fail(f"IMAP IDLE not accepted: {cont!r}")
except (OSError, imaplib.IMAP4.error) as e:
    fail(f"IMAP 127.0.0.1:{imap_port} login/IDLE as {addr}: {e}")

# 2. Send through Postfix.
msg = EmailMessage()
msg["From"] = f"sender-{token}@{domain}"
msg["To"] = addr
msg["Subject"] = subject
msg["Message-ID"] = f"<{token}@services.check>"
msg.set_content("mailroom services smoke test\n")
t_send = time.monotonic()
try:
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
        s.send_message(msg)
except (OSError, smtplib.SMTPException) as e:
    fail(f"SMTP 127.0.0.1:{smtp_port} send to {addr}: {e}")
t_sent = time.monotonic()

# 3. The IDLE session must be told about the new message.
deadline = t_send + DEADLINE_S
idle_ok = False
while time.monotonic() < deadline:
    idler.sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        line = idler.readline()
    except socket.timeout:
        break
    if not line:
        break
    if line.startswith(b"*") and b"EXISTS" in line.upper():
        idle_ok = True
        break
t_idle = time.monotonic()
try:
    idler.sock.settimeout(5)
    idler.send(b"DONE\r\n")
    idler.logout()
except Exception:
    pass

# 4. A fresh login must find the message in INBOX (polling).
found = False
try:
    imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=5)
    imap.login(addr, password)
    while True:
        imap.select("INBOX")
        typ, data = imap.search(None, "HEADER", "Message-ID", f"<{token}@services.check>")
        if typ == "OK" and data and data[0].split():
            found = True
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    imap.logout()
except (OSError, imaplib.IMAP4.error) as e:
    fail(f"IMAP 127.0.0.1:{imap_port} as {addr}: {e}")

if not found:
    fail(f"mail to {addr} did not reach INBOX within {DEADLINE_S:.0f}s "
         "(see the postfix and dovecot logs in the state dir)")
if not idle_ok:
    fail(f"mail to {addr} reached INBOX but IDLE sent no EXISTS within {DEADLINE_S:.0f}s")

# 5. TLS: IMAPS and STARTTLS log in (the certificate is self-signed: not verified).
insecure = ssl.create_default_context()
insecure.check_hostname = False
insecure.verify_mode = ssl.CERT_NONE
try:
    tls = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=insecure, timeout=5)
    tls.login(addr, password)
    tls.logout()
except (OSError, imaplib.IMAP4.error) as e:
    fail(f"IMAPS 127.0.0.1:{imaps_port} login as {addr}: {e}")
try:
    plain = imaplib.IMAP4("127.0.0.1", imap_port, timeout=5)
    plain.starttls(ssl_context=insecure)
    plain.login(addr, password)
    plain.logout()
except (OSError, imaplib.IMAP4.error) as e:
    fail(f"IMAP STARTTLS 127.0.0.1:{imap_port} login as {addr}: {e}")
print(f"check: OK  {addr}: SMTP accepted in {(t_sent - t_send) * 1000:.0f} ms, "
      f"IDLE EXISTS after {(t_idle - t_send) * 1000:.0f} ms, found in INBOX; IMAPS and STARTTLS log in")
PY
}

usage() {
  cat <<EOF
usage: $0 start|stop|status|env|check
  state dir: $STATE (set MAILROOM_SERVICES_DIR to change)
EOF
}

main() {
  case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    check) cmd_check ;;
    -h | --help | help)
      usage
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
