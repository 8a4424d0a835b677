"""The api's own Postgres table of runs, and its Postgres health check."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_runs (
    id            uuid PRIMARY KEY,
    experiment    text NOT NULL,
    experiment_id text NOT NULL,
    mlflow_run_id text NOT NULL UNIQUE,
    run_name      text NOT NULL,
    params        jsonb NOT NULL,
    metrics       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
)
"""


class StoreUnavailable(Exception):
    """Postgres could not complete the operation in time."""


@dataclass(frozen=True)
class RunRow:
    id: uuid.UUID
    experiment: str
    experiment_id: str
    mlflow_run_id: str
    run_name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: str


class Store:
    """One short-lived connection per operation, at most ``max_connections`` at once.

    Not a pool, chosen with the numbers (``bench/store_pool.py``, docs/measured.md "Benchmarks"): a pool with
    bounded reconnect (psycopg_pool 3.3, ``check``, ``reconnect_timeout``) does 16 times the
    operations per second here (a connection's SCRAM handshake is most of a short operation's
    40 ms), but after a Postgres restart it served its first operation 0.4 to 3 s late while a
    fresh connection (and so /health) worked at once. The api's write path is bound by MLflow (the
    breakpoint profile's knee: MLflow saturates first at about 10 writes/s, where Postgres per
    operation has 185 operations/s of room), so the truthful recovery wins. Revisit when the
    breakpoint profile names Postgres; or put PgBouncer or RDS Proxy in front."""

    def __init__(self, dsn: str, *, timeout: float, max_connections: int) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        async with self._slots:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, row_factory=dict_row)
            try:
                yield conn
            finally:
                await conn.close()

    async def ping(self) -> None:
        """A real round trip on a fresh connection."""
        async with self._connection() as conn:
            cur = await conn.execute("SELECT 1 FROM pg_catalog.pg_class LIMIT 1")
            await cur.fetchone()

    async def insert(self, row: RunRow) -> None:
        try:
            async with asyncio.timeout(self.timeout * 3), self._connection() as conn:
                await conn.execute(
                    "INSERT INTO api_runs (id, experiment, experiment_id, mlflow_run_id, run_name, params, metrics)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        row.id,
                        row.experiment,
                        row.experiment_id,
                        row.mlflow_run_id,
                        row.run_name,
                        json.dumps(row.params),
                        json.dumps(row.metrics),
                    ),
                )
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise StoreUnavailable(f"insert failed: {type(exc).__name__}") from exc

    async def get(self, run_id: uuid.UUID) -> RunRow | None:
        try:
            async with asyncio.timeout(self.timeout * 3), self._connection() as conn:
                cur = await conn.execute("SELECT * FROM api_runs WHERE id = %s", (run_id,))
                rec = await cur.fetchone()
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc
        if rec is None:
            return None
        return RunRow(
            rec["id"],
            rec["experiment"],
            rec["experiment_id"],
            rec["mlflow_run_id"],
            rec["run_name"],
            rec["params"],
            rec["metrics"],
            rec["created_at"].isoformat(),
        )


def migrate(dsn: str, connect_timeout: int = 5) -> None:
    """Create the table; used by the entrypoint once Postgres answers."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
        conn.execute(SCHEMA)
