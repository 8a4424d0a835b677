"""The database bootstrap a task runs before its service: with the database's master credentials,
make the service's own role (with the password kept in the service's secret) and its own
database, idempotently, and safely when every task of a service runs it at once (an advisory
lock serialises them). The password reaches the server only as a SCRAM verifier computed here,
so no server log (a failed statement, or every statement) can show it. On ECS it is a
non-essential container that the service's container depends on (``dependsOn: SUCCESS``); it
ships in both service images.

    python -m services.common.dbinit                 # bootstrap, exit 0; 1 when Postgres never answered
    python -m services.common.dbinit --check-config  # validate the environment; JSON and 0, or 2

Configuration (environment; the passwords come from a secret store, never from plain settings):
  DBINIT_HOST, DBINIT_PORT (5432)          the database server
  DBINIT_MASTER_USER, DBINIT_MASTER_PASSWORD  the master credentials (RDS keeps them in Secrets Manager)
  DBINIT_ADMIN_DATABASE (postgres)         where the master connects
  DBINIT_NAME, DBINIT_USER, DBINIT_PASSWORD  the service's database, role and its password
  DBINIT_TIMEOUT (60)                      seconds to wait for the server (bounded, logged retry), and
                                           again at most for the other tasks' bootstraps (the lock)
  DBINIT_SSLMODE, DBINIT_SSLROOTCERT       TLS to the server (verify-full and the CA bundle; libpq's names)
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from services.common.dsn import DsnError, check_bundle, tls
from services.common.startup import DependencyTimeout, retry_until_ready

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# the advisory lock that serialises the bootstraps ("dbint"); advisory locks belong to a database,
# and every dbinit takes it in the admin database it connects to (DBINIT_ADMIN_DATABASE)
LOCK_KEY = 0x6462696E74
REQUIRED = (
    "DBINIT_HOST",
    "DBINIT_MASTER_USER",
    "DBINIT_MASTER_PASSWORD",
    "DBINIT_NAME",
    "DBINIT_USER",
    "DBINIT_PASSWORD",
)


class ConfigError(ValueError):
    pass


def log(msg: str, fields: dict[str, Any] | None = None) -> None:
    line = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "info",
        "service": "dbinit",
        "msg": msg,
        **(fields or {}),
    }
    print(json.dumps(line, default=str), flush=True)


def settings(env: dict[str, str]) -> dict[str, Any]:
    """The bootstrap's settings; ConfigError naming every wrong variable."""
    problems = [f"{name}: required but not set" for name in REQUIRED if not env.get(name)]
    for name in ("DBINIT_NAME", "DBINIT_USER", "DBINIT_MASTER_USER"):
        value = env.get(name)
        if value and not IDENTIFIER.match(value):
            problems.append(f"{name}: expected a lower-case Postgres identifier, got {value!r}")
    port, timeout = env.get("DBINIT_PORT", "5432"), env.get("DBINIT_TIMEOUT", "60")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        problems.append(f"DBINIT_PORT: expected a port number, got {port!r}")
    try:
        if not 0 <= float(timeout) <= 3600:
            raise ValueError
    except ValueError:
        problems.append(f"DBINIT_TIMEOUT: expected seconds between 0 and 3600, got {timeout!r}")
    if env.get("DBINIT_USER") and env.get("DBINIT_USER") == env.get("DBINIT_MASTER_USER"):
        problems.append("DBINIT_USER: expected a role of the service's own, not the master user")
    try:
        transport = tls(env, "DBINIT_")
    except DsnError as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return {
        "host": env["DBINIT_HOST"],
        "port": int(port),
        "admin_database": env.get("DBINIT_ADMIN_DATABASE", "postgres"),
        "master_user": env["DBINIT_MASTER_USER"],
        "database": env["DBINIT_NAME"],
        "user": env["DBINIT_USER"],
        "timeout": float(timeout),
        "tls": transport,
    }


def bootstrap(cfg: dict[str, Any], master_password: str, password: str) -> dict[str, Any]:
    """Create or update the role (its password follows the secret) and create the database."""
    import psycopg
    from psycopg import sql

    def connect() -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host=cfg["host"],
            port=cfg["port"],
            dbname=cfg["admin_database"],
            user=cfg["master_user"],
            password=master_password,
            connect_timeout=5,
            autocommit=True,
            **cfg["tls"],
        )

    with retry_until_ready(connect, what="postgres", timeout=cfg["timeout"], log=log) as conn:
        # every task of a service runs this at once: one at a time, each seeing the one before
        # done (a session lock, so CREATE DATABASE, which no transaction may hold, is inside it)
        # bounded like the wait for the server (0 would mean "wait forever" to Postgres)
        wait_ms = max(1000, int(cfg["timeout"] * 1000))
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{wait_ms}ms")))
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        role, database = sql.Identifier(cfg["user"]), sql.Identifier(cfg["database"])
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (cfg["user"],)).fetchone()
        verb = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else "CREATE ROLE {} WITH LOGIN PASSWORD {}"
        # the server gets a SCRAM verifier computed here (libpq's PQencryptPasswordConn, as psql's
        # \password does), never the password: a logged statement cannot show it
        verifier = conn.pgconn.encrypt_password(password.encode(), cfg["user"].encode(), b"scram-sha-256")
        conn.execute(sql.SQL(verb).format(role, sql.Literal(verifier.decode())))
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))  # to create a database it owns
        created = not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg["database"],)).fetchone()
        if created:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(database))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
    return {"role": cfg["user"], "role_created": not exists, "database": cfg["database"], "database_created": created}


def main(args: list[str] | None = None) -> int:
    args = sys.argv[1:] if args is None else args
    if args not in ([], ["--check-config"]):
        print(f"usage: python -m services.common.dbinit [--check-config]; got {' '.join(args)}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    try:
        cfg = settings(env)
    except ConfigError as exc:
        print(f"invalid dbinit configuration: {exc}", file=sys.stderr)
        return 2
    if args:
        print(json.dumps(cfg))
        return 0
    try:
        check_bundle(cfg["tls"].get("sslrootcert"), "DBINIT_SSLROOTCERT")
    except DsnError as exc:
        print(f"invalid dbinit configuration: {exc}", file=sys.stderr)
        return 2
    try:
        done = bootstrap(cfg, env["DBINIT_MASTER_PASSWORD"], env["DBINIT_PASSWORD"])
    except DependencyTimeout as exc:
        log("giving up", {"error": str(exc)})
        return 1
    except Exception as exc:  # noqa: BLE001 - a statement that failed (another task held the lock too long)
        log("failed", {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    log("database ready", done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
