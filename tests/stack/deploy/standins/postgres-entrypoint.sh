#!/bin/bash
# Stand-in for the official postgres image's entrypoint (no registry here): POSTGRES_USER, _PASSWORD and
# _DB on first start, then PostgreSQL on every interface with password (SCRAM) authentication.
set -euo pipefail
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
BIN=/usr/lib/postgresql/15/bin
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_postgres() { su postgres -s /bin/bash -c "$1"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw && chown postgres /tmp/pw
    as_postgres "$BIN/initdb -D '$PGDATA' -U '$POSTGRES_USER' --pwfile=/tmp/pw --auth-host=scram-sha-256 --auth-local=trust"
    rm -f /tmp/pw
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "${POSTGRES_DB:-$POSTGRES_USER}" != "postgres" ]; then
        as_postgres "$BIN/pg_ctl -D '$PGDATA' -o '-c listen_addresses=' -w start"
        as_postgres "$BIN/createdb -h /run/postgresql -U '$POSTGRES_USER' '$POSTGRES_DB'"
        as_postgres "$BIN/pg_ctl -D '$PGDATA' -m fast -w stop"
    fi
fi
exec su postgres -s /bin/bash -c "exec $BIN/postgres -D '$PGDATA'"
