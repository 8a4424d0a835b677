#!/bin/sh
# Initialise the cluster on first start, create the role and databases, then exec postgres.
# With POSTGRES_TLS_CERT and POSTGRES_TLS_KEY (PEM), it serves TLS only, as RDS does with
# rds.force_ssl=1: a client that does not ask for TLS is refused. Without them it serves plain
# connections. Either way is set on every start, so a data directory made the other way follows.
set -eu
: "${POSTGRES_USER:=app}"
: "${POSTGRES_DBS:=mlflow,api}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "invalid postgres configuration: POSTGRES_PASSWORD: required but not set" >&2
    exit 2
fi
if [ -n "${POSTGRES_TLS_CERT:-}" ] && [ -z "${POSTGRES_TLS_KEY:-}" ]; then
    echo "invalid postgres configuration: POSTGRES_TLS_KEY: required with POSTGRES_TLS_CERT" >&2
    exit 2
fi
if [ -z "${POSTGRES_TLS_CERT:-}" ] && [ -n "${POSTGRES_TLS_KEY:-}" ]; then
    echo "invalid postgres configuration: POSTGRES_TLS_CERT: required with POSTGRES_TLS_KEY" >&2
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
if [ -n "${POSTGRES_TLS_CERT:-}" ]; then
    sed -i 's/^host\(ssl\)\{0,1\} /hostssl /' "$PGDATA/pg_hba.conf"
    printf '%s\n' "$POSTGRES_TLS_CERT" > "$PGDATA/server.crt"
    (umask 077 && printf '%s\n' "$POSTGRES_TLS_KEY" > "$PGDATA/server.key")
    set -- -c ssl=on
else
    sed -i 's/^hostssl /host /' "$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k /run/postgresql "$@"
