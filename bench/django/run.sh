#!/usr/bin/env bash
# bench/django/run.sh PORT: the classic Django stack (gunicorn + gevent,
# PostgreSQL, Redis) serving the flash-sale contract's subset that
# `stampede storm` drives, on 127.0.0.1:PORT, in the foreground.
#
# It (re)creates a venv and installs requirements.txt into it (skipped when
# the venv already holds them), drops and recreates its own database,
# migrates, removes its own old keys from Redis, then becomes gunicorn
# (exec: the script's PID is gunicorn's master, so SIGTERM to it stops the
# server gracefully). Once /healthz answers it prints
#   django is up: http://127.0.0.1:PORT
#
# Environment (defaults in brackets):
#   DJANGO_ADMIN_TOKEN       required: the admin API's bearer token
#   DJANGO_FAST_PASSWORDS [0] 1 hashes passwords with MD5 (benchmarks only)
#   DJANGO_WORKERS [2]       gunicorn gevent worker processes
#   DJANGO_DB_POOL_MAX [2]   PostgreSQL connections per worker (pool size)
#   DJANGO_DB_NAME [django_flash]  the database made (and dropped) here
#   DJANGO_DB_HOST [127.0.0.1] DJANGO_DB_PORT [5432] DJANGO_DB_USER [postgres]
#   DJANGO_REDIS_URL [redis://127.0.0.1:6379/0]
#   DJANGO_CACHE_PREFIX [django_flash]  Redis keys made (and removed) here
#   DJANGO_VENV [/tmp/stampede-django-venv]  PYTHON [python3]
#   DJANGO_SECRET_KEY [random per start]

set -euo pipefail
export LC_ALL=C

log() { printf '[django/run.sh] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

PORT=${1:-}
[[ $PORT =~ ^[0-9]+$ ]] && ((PORT >= 1 && PORT <= 65535)) || die "usage: run.sh PORT"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${DJANGO_VENV:-/tmp/stampede-django-venv}
PYTHON=${PYTHON:-python3}

[[ -n ${DJANGO_ADMIN_TOKEN:-} ]] || die "set DJANGO_ADMIN_TOKEN (the admin API's bearer token)"
export DJANGO_ADMIN_TOKEN
export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')}
export DJANGO_FAST_PASSWORDS=${DJANGO_FAST_PASSWORDS:-0}
export DJANGO_WORKERS=${DJANGO_WORKERS:-2}
export DJANGO_DB_NAME=${DJANGO_DB_NAME:-django_flash}
export DJANGO_DB_HOST=${DJANGO_DB_HOST:-127.0.0.1}
export DJANGO_DB_PORT=${DJANGO_DB_PORT:-5432}
export DJANGO_DB_USER=${DJANGO_DB_USER:-postgres}
export DJANGO_REDIS_URL=${DJANGO_REDIS_URL:-redis://127.0.0.1:6379/0}
export DJANGO_CACHE_PREFIX=${DJANGO_CACHE_PREFIX:-django_flash}
export DJANGO_SETTINGS_MODULE=flashsale.settings

[[ $DJANGO_DB_NAME =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "DJANGO_DB_NAME must be a plain lower-case identifier"
[[ $DJANGO_DB_NAME != postgres && $DJANGO_DB_NAME != template* ]] || die "DJANGO_DB_NAME must be a database of its own"
[[ $DJANGO_CACHE_PREFIX =~ ^[A-Za-z0-9_.-]+$ ]] || die "DJANGO_CACHE_PREFIX: letters, digits, _ . - only"
[[ $DJANGO_WORKERS =~ ^[1-9][0-9]*$ ]] || die "DJANGO_WORKERS must be a positive integer"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  die "127.0.0.1:$PORT is already taken"
fi

# --- the venv: made once, refreshed when requirements.txt changes.
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python ]]; then
  log "creating a venv in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "installing requirements.txt into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$want" >"$stamp"
fi

# --- the database: this run's own, from scratch.
log "recreating database $DJANGO_DB_NAME on $DJANGO_DB_HOST:$DJANGO_DB_PORT"
psql_admin=(psql -X -q -v ON_ERROR_STOP=1 -h "$DJANGO_DB_HOST" -p "$DJANGO_DB_PORT" -U "$DJANGO_DB_USER" -d postgres)
"${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $DJANGO_DB_NAME WITH (FORCE)"
"${psql_admin[@]}" -c "CREATE DATABASE $DJANGO_DB_NAME"
cd "$HERE"
"$VENV/bin/python" manage.py migrate --noinput -v 0

# --- Redis: only this stack's keys (sessions, cached pages) go.
"$VENV/bin/python" - <<'PY'
import os
import redis

r = redis.Redis.from_url(os.environ["DJANGO_REDIS_URL"])
batch = []
for key in r.scan_iter(match=os.environ["DJANGO_CACHE_PREFIX"] + ":*", count=1000):
    batch.append(key)
    if len(batch) == 1000:
        r.unlink(*batch)
        batch.clear()
if batch:
    r.unlink(*batch)
PY

log "starting gunicorn: $DJANGO_WORKERS gevent workers, fast passwords=$DJANGO_FAST_PASSWORDS"
# Says when the server answers; gives up with the server (gunicorn keeps
# this script's PID after the exec below).
server_pid=$$
(
  for _ in $(seq 1 600); do
    kill -0 "$server_pid" 2>/dev/null || exit 0
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then
      echo "django is up: http://127.0.0.1:$PORT"
      exit 0
    fi
    sleep 0.1
  done
  log "ERROR: /healthz did not answer within 60 s"
) &
exec "$VENV/bin/gunicorn" -c "$HERE/gunicorn.conf.py" --bind "127.0.0.1:$PORT" flashsale.wsgi:application
