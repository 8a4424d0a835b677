"""Readiness probes: each returns an observed value for ``wait_until`` to judge."""

from __future__ import annotations

import httpx
import psycopg


def postgres_ready(dsn: str, timeout: float = 2.0) -> str:
    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=True) as conn:
        return str(conn.execute("SELECT version()").fetchone()[0])


def ensure_databases(admin_dsn: str, names: tuple[str, ...]) -> None:
    """Create the databases that do not exist yet (idempotent; the docker image makes them itself)."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        for name in names:
            if name not in have:
                conn.execute(f'CREATE DATABASE "{name}"')


def http_status(url: str, timeout: float = 2.0, **kw) -> int:
    return httpx.get(url, timeout=timeout, **kw).status_code


def mlflow_ready(base_url: str, timeout: float = 5.0) -> int:
    """A real tracking call: /mlflow/health answers before the tracking API can (see DESIGN.md)."""
    health = httpx.get(f"{base_url}/health", timeout=timeout).status_code
    if health != 200:
        return health
    return httpx.get(f"{base_url}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                     timeout=timeout).status_code


def api_health(base_url: str, timeout: float = 5.0) -> dict:
    r = httpx.get(f"{base_url}/health", timeout=timeout)
    body = r.json() if r.headers.get("content-type", "").startswith("application/health+json") else {}
    return {"http": r.status_code, "status": body.get("status"), "checks": {
        k: v[0].get("status") for k, v in body.get("checks", {}).items()}}
