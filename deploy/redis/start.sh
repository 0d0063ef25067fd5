#!/bin/sh
# Starts redis-server with deploy/redis/redis.conf plus a private include holding the password and
# the dashboard's read-only ACL user, built from the environment, so no secret is on a command line.
set -eu
: "${REDIS_PASSWORD:?set REDIS_PASSWORD (see .env.example)}"
: "${REDIS_DASHBOARD_PASSWORD:?set REDIS_DASHBOARD_PASSWORD (see .env.example)}"
APP="${MOBSTREAM_APP:-mobstream}"
umask 077
secrets="${REDIS_SECRETS_FILE:-/tmp/mobstream-secrets.conf}"
{
  printf 'requirepass %s\n' "$REDIS_PASSWORD"
  # Read-only on the app's keys: the dashboard only reads (docs/security.md).
  printf 'user dashboard on >%s resetkeys ~%s:* resetchannels -@all +@read -@write +ping +hello +auth +select +client|setinfo +cluster|slots +cluster|nodes +readonly\n' \
    "$REDIS_DASHBOARD_PASSWORD" "$APP"
} > "$secrets"
# Extra arguments override the config (the no-Docker test runs it on a loopback port and a temp dir).
exec "${REDIS_SERVER:-redis-server}" "${REDIS_CONF:-/usr/local/etc/redis/redis.conf}" --include "$secrets" "$@"
