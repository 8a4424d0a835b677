"""MLflow entrypoint: validate configuration, wait for Postgres (bounded), then run ``mlflow server``
in the same process (through ``services.mlflow.serve``: one JSON line per request, with its
X-Request-ID).

Run as ``python -m services.mlflow.entrypoint``; with ``--check-config`` it only validates the
environment: prints the effective settings as JSON and exits 0, or the problem and exits 2.
Configuration (environment):
  MLFLOW_BACKEND_STORE_URI       postgresql:// (psycopg 3) or postgresql+psycopg2://; required, unless
                                 given in pieces: MLFLOW_DATABASE_HOST, _PORT (5432), _NAME, _USER,
                                 _PASSWORD (a platform's secret store may inject the password alone);
  MLFLOW_DATABASE_SSLMODE / _SSLROOTCERT  TLS to Postgres for either form (verify-full and a CA bundle:
                                 the image carries Amazon RDS's at /etc/ssl/certs/rds-global-bundle.pem)
  MLFLOW_HOST / MLFLOW_PORT      bind address (0.0.0.0 / 5000)
  MLFLOW_STATIC_PREFIX           URL prefix (/mlflow); /mlflow/health is the health check
  MLFLOW_WORKERS                 uvicorn workers (1: 0.4 GB; 4 with jobs: ~3 GB; docs/mlflow.md)
  MLFLOW_ARTIFACTS_DESTINATION   artifact root (./mlartifacts: the task's disk; s3://bucket/prefix to keep them)
  MLFLOW_ALLOWED_HOSTS           Host-header allow-list; must admit the api's name for MLflow
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION  false unless asked for (job runner: 7 extra processes)
  MLFLOW_STARTUP_TIMEOUT         seconds to wait for Postgres (60), and at most as long again for
                                 another task creating MLflow's tables (the schema lock)

Every task of the service starts at once: on a fresh database each ``mlflow server`` would create
MLflow's tables, and all but one fail (``duplicate key ... alembic_version``, seen when the
rehearsal started prod's two MLflow tasks together). So the entrypoint creates them first, under a
Postgres advisory lock in MLflow's database, as ``mlflow server`` does on an empty database; the
other tasks wait for the lock and find them. An existing schema is left as it is (an upgrade is
``mlflow db upgrade``, a step of its own, taken with a backup).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from services.common import jsonlog
from services.common.dsn import DsnError, bundle_of, check_bundle, database_url
from services.common.redact import dsn_secrets, safe_dsn
from services.common.startup import DependencyTimeout, retry_until_ready

DEFAULT_ALLOWED_HOSTS = "mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"
# the advisory lock (in MLflow's database) under which one task at a time creates MLflow's tables
SCHEMA_LOCK_KEY = 0x6D6C666C6F77  # "mlflow"
DRIVERS = {
    "postgresql": "psycopg",
    "postgres": "psycopg",
    "postgresql+psycopg": "psycopg",
    "postgresql+psycopg2": "psycopg2",
}


class ConfigError(ValueError):
    pass


def log(msg: str, fields: dict[str, Any] | None = None) -> None:
    line = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "info",
        "service": "mlflow-entrypoint",
        "msg": msg,
        **(fields or {}),
    }
    print(json.dumps(line, default=str), flush=True)


def _number(env: dict[str, str], name: str, default: str, kind: type, low: float, high: float) -> float:
    raw = env.get(name, default)
    try:
        value: float = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: expected a value between {low} and {high}, got {raw!r}")
    return value


def resolved(env: dict[str, str]) -> dict[str, str]:
    """``env`` with MLFLOW_BACKEND_STORE_URI built from its pieces when they are given instead."""
    try:
        uri = database_url(env, "MLFLOW_DATABASE_", "MLFLOW_BACKEND_STORE_URI")
    except DsnError as exc:
        raise ConfigError(str(exc)) from None
    return env if uri is None else {**env, "MLFLOW_BACKEND_STORE_URI": uri}


def build_command(env: dict[str, str]) -> list[str]:
    """The ``mlflow server`` argv for this environment; raises ConfigError naming the variable."""
    uri = env.get("MLFLOW_BACKEND_STORE_URI", "")
    if not uri:
        raise ConfigError(
            "MLFLOW_BACKEND_STORE_URI: required but not set (postgresql://user:pass@host:5432/db, "
            "or its pieces: MLFLOW_DATABASE_HOST, _NAME, _USER, _PASSWORD)"
        )
    scheme = urlsplit(uri).scheme
    if scheme not in DRIVERS:
        raise ConfigError(f"MLFLOW_BACKEND_STORE_URI: expected one of {sorted(DRIVERS)}:// URLs, got {scheme!r}")
    module = DRIVERS[scheme]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"MLFLOW_BACKEND_STORE_URI: scheme {scheme!r} needs the {module} driver, "
            "which is not installed (SQLAlchemy 2.1 maps postgresql:// to psycopg 3)"
        )
    prefix = env.get("MLFLOW_STATIC_PREFIX", "/mlflow")
    if not prefix.startswith("/") or prefix.endswith("/") or "{" in prefix:
        raise ConfigError(
            f"MLFLOW_STATIC_PREFIX: expected a path like /mlflow (leading /, no trailing /), got {prefix!r}"
        )
    port = int(_number(env, "MLFLOW_PORT", "5000", int, 1, 65535))
    workers = int(_number(env, "MLFLOW_WORKERS", "1", int, 1, 16))
    artifacts = env.get("MLFLOW_ARTIFACTS_DESTINATION", "./mlartifacts")
    scheme = urlsplit(artifacts).scheme
    if scheme == "s3" and importlib.util.find_spec("boto3") is None:
        raise ConfigError("MLFLOW_ARTIFACTS_DESTINATION: s3:// needs boto3, which is not installed")
    if scheme not in ("", "file", "s3"):
        raise ConfigError(f"MLFLOW_ARTIFACTS_DESTINATION: expected a path or an s3:// URL, got {artifacts!r}")
    jobs = env.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false").lower()
    if jobs not in ("true", "false"):
        raise ConfigError(f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION: expected true or false, got {jobs!r}")
    # the backend URI (with its password) reaches mlflow through MLFLOW_BACKEND_STORE_URI, not argv,
    # so it does not show in the process list
    return [
        sys.executable,
        "-m",
        "services.mlflow.serve",  # `mlflow server`, its app wrapped for JSON request lines
        "--uvicorn-opts",
        "--no-access-log",  # the observed app writes the request lines
        "--artifacts-destination",
        artifacts,
        "--host",
        env.get("MLFLOW_HOST", "0.0.0.0"),
        "--port",
        str(port),
        "--static-prefix",
        prefix,
        "--workers",
        str(workers),
        "--allowed-hosts",
        env.get("MLFLOW_ALLOWED_HOSTS", DEFAULT_ALLOWED_HOSTS),
    ]


def child_env(env: dict[str, str]) -> dict[str, str]:
    out = dict(env)
    out.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    out.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's own log handler writes plain text; without it, its loggers reach ours (JSON)
    out.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    return out


def wait_for_postgres(uri: str, timeout: float) -> None:
    import psycopg

    retry_until_ready(
        lambda: psycopg.connect(_plain(uri), connect_timeout=3).close(), what="postgres", timeout=timeout, log=log
    )


def _plain(uri: str) -> str:
    """The backend URI as libpq takes it (no SQLAlchemy driver name)."""
    return uri.replace("+psycopg2", "").replace("+psycopg", "")


def prepare_schema(uri: str, timeout: float) -> bool:
    """MLflow's tables, created once however many tasks start together: if they are missing, under
    a session advisory lock (waited for at most ``timeout`` s) and checked again there, created as
    ``mlflow server`` creates them on an empty database. True when this task created them. The
    engine is made before the lock, so no task holds the lock through MLflow's connection retries."""
    import psycopg

    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # its lines in our JSON, not its text
    jsonlog.configure("mlflow-entrypoint", "INFO", dsn_secrets(uri))
    from mlflow.store.db import utils

    engine = utils.create_sqlalchemy_engine_with_retry(uri)  # type: ignore[no-untyped-call]
    try:
        if utils._all_tables_exist(engine):  # type: ignore[no-untyped-call]
            return False  # every start after the first: no lock taken
        with psycopg.connect(_plain(uri), connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"SET lock_timeout = '{max(1000, int(timeout * 1000))}ms'")
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
            if utils._all_tables_exist(engine):  # type: ignore[no-untyped-call]
                return False  # another task made them while this one waited
            utils._initialize_tables(engine)  # type: ignore[no-untyped-call]
            return True  # the lock goes with the session, when ``conn`` closes
    finally:
        engine.dispose()


def effective(env: dict[str, str], argv: list[str], startup: float) -> dict[str, Any]:
    """The settings the server will run with (backend password masked)."""
    served = child_env(env)
    return {
        "backend_store_uri": safe_dsn(env["MLFLOW_BACKEND_STORE_URI"]),
        "argv": argv[2:],
        "workers": int(argv[argv.index("--workers") + 1]),
        "static_prefix": argv[argv.index("--static-prefix") + 1],
        "job_execution": served["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"].lower() == "true",
        "artifacts_destination": argv[argv.index("--artifacts-destination") + 1],
        "allowed_hosts": argv[argv.index("--allowed-hosts") + 1].split(","),
        "startup_timeout": startup,
    }


def main(args: list[str] | None = None) -> int:
    args = sys.argv[1:] if args is None else args
    if args not in ([], ["--check-config"]):
        print(f"usage: python -m services.mlflow.entrypoint [--check-config]; got {' '.join(args)}", file=sys.stderr)
        return 2
    try:
        env = resolved(dict(os.environ))
        argv = build_command(env)
        startup = _number(env, "MLFLOW_STARTUP_TIMEOUT", "60", float, 0, 3600)
    except ConfigError as exc:
        print(f"invalid mlflow configuration: {exc}", file=sys.stderr)
        return 2
    if args:
        print(json.dumps(effective(env, argv, startup)))
        return 0
    try:
        check_bundle(bundle_of(env["MLFLOW_BACKEND_STORE_URI"]), "MLFLOW_DATABASE_SSLROOTCERT")
    except DsnError as exc:
        print(f"invalid mlflow configuration: {exc}", file=sys.stderr)
        return 2
    log("starting", {"backend": safe_dsn(env["MLFLOW_BACKEND_STORE_URI"]), "argv": argv[2:]})
    # the server's environment before MLflow is first imported (some settings are read on import)
    os.environ.update(child_env(env))
    try:
        wait_for_postgres(env["MLFLOW_BACKEND_STORE_URI"], startup)
    except DependencyTimeout as exc:
        log("giving up", {"error": str(exc)})
        return 1
    try:
        created = prepare_schema(env["MLFLOW_BACKEND_STORE_URI"], startup)
    except Exception as exc:  # noqa: BLE001 - the lock waited too long, or the tables could not be made
        log("giving up", {"error": f"MLflow's tables: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
        return 1
    log("schema ready", {"created_here": created})
    sys.stdout.flush()
    return serve(argv)


def serve(argv: list[str]) -> int:
    """``python -m services.mlflow.serve ...`` (``argv``), in this process: MLflow is imported
    already (``prepare_schema``), and a new interpreter would import it again, about 1.5 CPU-seconds
    of every start (docs/mlflow.md). Its exit status is the server's."""
    from services.mlflow import serve as server

    try:
        server.main(argv[3:])
    except SystemExit as exc:  # click ends the command this way
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
