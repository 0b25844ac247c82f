#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for arrears' tests and benchmarks.
#
#   scripts/postgres.sh start   install PostgreSQL from the distribution's packages if it is
#                               missing, create a cluster in a temporary directory listening on
#                               127.0.0.1 only (a free port, a password-protected role), start it,
#                               and print its URL as the last line:
#                                 postgres://arrears:PASSWORD@127.0.0.1:PORT/arrears
#                               A cluster this script already started (and that still runs) is
#                               reused: its URL is printed again.
#   scripts/postgres.sh stop    stop that cluster and remove its directory.
#   scripts/postgres.sh url     print the running cluster's URL (exit 1 if there is none).
#
# State is kept in ${ARREARS_PG_STATE:-${TMPDIR:-/tmp}/arrears-pg.env}. Concurrent `start`s
# (parallel test binaries) are serialised with flock on that file + `.lock`.
# Never for production: fsync stays on (so benchmarks measure durable commits), but the cluster
# lives in /tmp and is removed by `stop`.
set -euo pipefail

STATE="${ARREARS_PG_STATE:-${TMPDIR:-/tmp}/arrears-pg.env}"
LOCK="$STATE.lock"
ROLE=arrears
DB=arrears

say() { echo "postgres.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# The directory holding initdb/pg_ctl/postgres, installing the distribution's package if needed.
bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return
  fi
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and this is not root: install it (Debian: apt-get install postgresql) and run again"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and there is no apt-get to install it"
  say "installing PostgreSQL (apt-get install postgresql)…"
  # No default cluster on 5432: we make our own.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/arrears.conf
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  die "apt-get installed postgresql but no initdb was found under /usr/lib/postgresql/*/bin"
}

# PostgreSQL refuses to run as root: run it as the `postgres` system user (created if missing).
RUNAS=()
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    if command -v runuser >/dev/null 2>&1; then RUNAS=(runuser -u postgres --); else RUNAS=(su postgres -s /bin/sh -c); fi
  fi
}
run() {
  if [ ${#RUNAS[@]} -eq 0 ]; then "$@"
  elif [ "${RUNAS[0]}" = runuser ]; then "${RUNAS[@]}" "$@"
  else "${RUNAS[@]}" "$(printf '%q ' "$@")"
  fi
}

running() {
  [ -f "$STATE" ] || return 1
  # shellcheck disable=SC1090
  . "$STATE"
  [ -n "${PGBIN:-}" ] && [ -d "${PGDIR:-/nonexistent}/data" ] || return 1
  as_owner
  run "$PGBIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  if running; then
    say "reusing the cluster in $PGDIR (port $PGPORT); \`scripts/postgres.sh stop\` removes it"
    echo "$PGURL"
    return
  fi
  PGBIN=$(bindir)
  as_owner
  PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/arrears-pg.XXXXXX")
  chmod 755 "$PGDIR"
  local pass
  pass=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$pass" >"$PGDIR/pwfile"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$PGDIR"
  run "$PGBIN/initdb" -D "$PGDIR/data" -U "$ROLE" --pwfile="$PGDIR/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$PGDIR/initdb.log" 2>&1 ||
    { cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
  rm -f "$PGDIR/pwfile"
  local port tries=0
  while :; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
    if port_free "$port"; then
      cat >>"$PGDIR/data/postgresql.conf" <<EOF
# arrears throwaway cluster (scripts/postgres.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PGDIR'
max_connections = 200
shared_buffers = 512MB
max_wal_size = 4GB
fsync = on
synchronous_commit = on
EOF
      # 9>&-: the server must not inherit (and hold forever) the lock on the state file.
      if run "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 start >/dev/null 9>&-; then
        break
      fi
      sed -i '/^# arrears throwaway cluster/,$d' "$PGDIR/data/postgresql.conf"
    fi
    tries=$((tries + 1))
    [ $tries -lt 20 ] || { tail -20 "$PGDIR/server.log" >&2 || true; die "could not start PostgreSQL on a free port"; }
  done
  run "$PGBIN/psql" -h "$PGDIR" -p "$port" -U "$ROLE" -d postgres -qAt -c "CREATE DATABASE $DB" >/dev/null
  PGPORT=$port
  PGURL="postgres://$ROLE:$pass@127.0.0.1:$port/$DB"
  umask 077
  cat >"$STATE" <<EOF
PGBIN='$PGBIN'
PGDIR='$PGDIR'
PGPORT='$PGPORT'
PGURL='$PGURL'
EOF
  say "PostgreSQL $("$PGBIN/postgres" --version | sed 's/.*) //') running in $PGDIR on 127.0.0.1:$port"
  echo "$PGURL"
}

stop() {
  if [ ! -f "$STATE" ]; then
    say "no cluster recorded in $STATE"
    return
  fi
  # shellcheck disable=SC1090
  . "$STATE"
  as_owner
  if [ -d "$PGDIR/data" ]; then
    run "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  case "$PGDIR" in
    "${TMPDIR:-/tmp}"/arrears-pg.*) rm -rf "$PGDIR" ;;
    *) say "not removing $PGDIR (not a directory this script made)" ;;
  esac
  rm -f "$STATE"
  say "stopped"
}

cmd="${1:-}"
case "$cmd" in
  start | stop | url) ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
exec 9>"$LOCK"
flock 9
case "$cmd" in
  start) start ;;
  stop) stop ;;
  url) running || die "no running cluster (scripts/postgres.sh start)"; echo "$PGURL" ;;
esac
