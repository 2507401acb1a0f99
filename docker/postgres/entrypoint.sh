#!/bin/bash
# Entrypoint of docker/postgres/Dockerfile: as root, make the data and socket folders the
# postgres user's and start again as that user; on the first start, initdb (password
# authentication over TCP, trust on the socket inside the container), create
# POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql and *.sh against a server listening
# on the socket only; then run the command (postgres and its -c options).
set -euo pipefail

if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec runuser -u postgres -- "$0" "$@"
fi

first_start() {
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=trust \
        --auth-host=scram-sha-256 --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") > /dev/null
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" \
        start > /dev/null
    export PGHOST=/var/run/postgresql POSTGRES_USER=postgres POSTGRES_DB=${POSTGRES_DB:-postgres}
    if [ "$POSTGRES_DB" != postgres ]; then
        echo 'create database :"db"' |
            psql -v ON_ERROR_STOP=1 -U postgres -d postgres -v db="$POSTGRES_DB" > /dev/null
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) psql -v ON_ERROR_STOP=1 -U postgres -d "$POSTGRES_DB" -f "$f" > /dev/null ;;
            *.sh) if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop > /dev/null
    echo "postgres-entrypoint: initialised $PGDATA"
}

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    first_start
fi
exec "$@"
