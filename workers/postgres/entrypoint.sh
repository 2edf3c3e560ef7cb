#!/bin/sh
# `docker-entrypoint.sh postgres ARGS...`: initialise PGDATA on first start (as the
# postgres user: initdb refuses root), create POSTGRES_DB owned by POSTGRES_USER with
# POSTGRES_PASSWORD (scram-sha-256 over TCP), then exec the server with ARGS.
set -eu
if [ "${1:-postgres}" != postgres ]; then
    exec "$@"
fi
[ $# -gt 0 ] && shift
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
USER_NAME=${POSTGRES_USER:-postgres}
DB_NAME=${POSTGRES_DB:-$USER_NAME}
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 0700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb --username="$USER_NAME" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --no-sync -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    if [ "$DB_NAME" != postgres ]; then
        echo "CREATE DATABASE \"$DB_NAME\" OWNER \"$USER_NAME\";" |
            as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres "$@"
