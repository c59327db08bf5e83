#!/usr/bin/env bash
# `make services`: the PostgreSQL and Redis the end-to-end tests use (PAYMENTAPP_PG_URL,
# PAYMENTAPP_REDIS_URL; by default on 127.0.0.1), started when they are installed here but
# not running. Nothing is installed: a missing one is named with its Debian package.
#
# PostgreSQL refuses to run as root, so it is started by the OS's own tooling (Debian's
# pg_ctlcluster, else `service`), which runs it as its own user; then the tests' database
# is made if missing. Redis is started as a throwaway server for the tests (no persistence).
# Not root: through sudo. Fails, saying what is still missing, unless both answer.
set -euo pipefail

PG_URL=${PAYMENTAPP_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}
PG_URL=${PG_URL/postgresql+psycopg:/postgresql:} # libpq's spelling of the same URL
REDIS_URL=${PAYMENTAPP_REDIS_URL:-redis://127.0.0.1:6379/0}
LOCAL='(127\.0\.0\.1|localhost|\[::1\])'
problems=()

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "not root and no sudo: run \`make services\` as root" >&2
    return 1
  fi
}

postgres_up() { pg_isready -q -d "$PG_URL"; }
redis_up() { redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; }

wait_until() { # wait_until CHECK: up to 30 s
  for _ in $(seq 1 30); do
    "$1" && return 0
    sleep 1
  done
  return 1
}

start_postgres() {
  if [[ ! $PG_URL =~ ^postgresql://([^@/]*@)?$LOCAL(:[0-9]+)?/ ]]; then
    problems+=("PostgreSQL at $PG_URL does not answer, and it is not on this machine")
    return
  fi
  if command -v pg_lsclusters >/dev/null 2>&1; then # Debian, Ubuntu
    local version cluster status started=
    while read -r version cluster _ status _; do
      if [[ $status != online* ]]; then
        echo "starting PostgreSQL $version/$cluster"
        as_root pg_ctlcluster "$version" "$cluster" start </dev/null || true
      fi
      started=1
    done < <(pg_lsclusters -h)
    if [ -z "$started" ]; then
      problems+=("PostgreSQL server is not installed (Debian: sudo apt-get install postgresql)")
      return
    fi
  else
    echo "starting PostgreSQL"
    as_root service postgresql start || true
  fi
  wait_until postgres_up ||
    problems+=("PostgreSQL at $PG_URL still does not answer (see its log in /var/log/postgresql)")
}

# The tests connect as PAYMENTAPP_PG_URL says (by default the `postgres` user, no password,
# database `test`) and make their own databases next to it.
check_test_database() {
  command -v psql >/dev/null 2>&1 || return 0
  local error database=${PG_URL##*/}
  database=${database%%\?*}
  if error=$(psql -w "$PG_URL" -Atqc 'SELECT 1' 2>&1 >/dev/null); then
    return 0
  fi
  if [[ $error == *"database \"$database\" does not exist"* ]]; then
    echo "creating the tests' database $database"
    if error=$(psql -w "${PG_URL%/*}/postgres" -qc "CREATE DATABASE \"$database\"" 2>&1 >/dev/null); then
      return 0
    fi
  fi
  problems+=("PostgreSQL refuses the tests' connection ($PG_URL): ${error%%$'\n'*}
  (let that user in, e.g. on a test machine pg_hba.conf's host all all 127.0.0.1/32 trust, or set PAYMENTAPP_PG_URL)")
}

start_redis() {
  if [[ ! $REDIS_URL =~ ^redis://([^@/]*@)?$LOCAL(:([0-9]+))?(/|$) ]]; then
    problems+=("Redis at $REDIS_URL does not answer, and it is not on this machine")
    return
  fi
  local port=${BASH_REMATCH[4]:-6379} dir=${TMPDIR:-/tmp}/paymentapp-redis
  echo "starting Redis on port $port (for the tests: no persistence; log in $dir)"
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save "" \
    --appendonly no --dir "$dir" --logfile "$dir/redis.log" || true
  wait_until redis_up || problems+=("Redis at $REDIS_URL still does not answer (log: $dir/redis.log)")
}

if ! command -v pg_isready >/dev/null 2>&1; then
  problems+=("PostgreSQL is not installed (Debian: sudo apt-get install postgresql)")
else
  postgres_up || start_postgres
  postgres_up && check_test_database
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  problems+=("Redis is not installed (Debian: sudo apt-get install redis-server)")
else
  redis_up || start_redis
fi

if [ ${#problems[@]} -gt 0 ]; then
  printf 'make services: %s\n' "${problems[@]}" >&2
  exit 1
fi
echo "PostgreSQL at $PG_URL and Redis at $REDIS_URL are up"
