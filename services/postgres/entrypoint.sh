#!/bin/sh
# Initialise the cluster on first start, create the role and databases, then exec postgres.
set -eu
: "${POSTGRES_USER:=app}"
: "${POSTGRES_DBS:=mlflow,api}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "invalid postgres configuration: POSTGRES_PASSWORD: required but not set" >&2
    exit 2
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 >/dev/null
    rm -f "$pwfile"
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /run/postgresql" -w start >/dev/null
    for db in $(echo "$POSTGRES_DBS" | tr ',' ' '); do
        psql -h /run/postgresql -U "$POSTGRES_USER" -d postgres -qc "CREATE DATABASE \"$db\"" 
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k /run/postgresql
