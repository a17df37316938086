#!/bin/sh
# Starts PostgreSQL on $PGDATA. On the first start it creates the cluster: the superuser `postgres`
# with the password in POSTGRES_PASSWORD (or in the file POSTGRES_PASSWORD_FILE names), the database
# POSTGRES_DB, and password (scram-sha-256) logins from the network.
set -eu
PATH="$(echo /usr/lib/postgresql/*/bin):$PATH"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
  fi
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}"
  password=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$password"
  initdb --pgdata="$PGDATA" --username=postgres --pwfile="$password" --encoding=UTF8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  rm -f "$password"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
  if [ "${POSTGRES_DB:-postgres}" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "start-postgres: created the cluster in $PGDATA"
fi
exec postgres -D "$PGDATA"
