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

# A run is recorded in two stores. The row is written first, as an intent ("pending", with the
# request and its hash), then the MLflow run (tagged with the row's id), then the row completed.
# Nothing is ever deleted on a failure, so no row points at a deleted run: a lost answer leaves a
# pending row and perhaps a tagged run, which the retry with the same Idempotency-Key, or a read,
# finishes. ``claimed_until`` is the lease of the request working on a pending row, ``claimed_by``
# that request's own token: only it may give the row back or complete it, and a complete row is
# never written again, so a request that outlived its lease cannot undo the one that took over.
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_runs (
    id              uuid PRIMARY KEY,
    experiment      text NOT NULL,
    experiment_id   text,
    mlflow_run_id   text UNIQUE,
    run_name        text NOT NULL,
    params          jsonb NOT NULL,
    metrics         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'complete',
    idempotency_key text UNIQUE,
    request_hash    text,
    claimed_until   timestamptz,
    claimed_by      uuid
);
ALTER TABLE api_runs ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'complete';
ALTER TABLE api_runs ADD COLUMN IF NOT EXISTS idempotency_key text UNIQUE;
ALTER TABLE api_runs ADD COLUMN IF NOT EXISTS request_hash text;
ALTER TABLE api_runs ADD COLUMN IF NOT EXISTS claimed_until timestamptz;
ALTER TABLE api_runs ADD COLUMN IF NOT EXISTS claimed_by uuid;
ALTER TABLE api_runs ALTER COLUMN experiment_id DROP NOT NULL;
ALTER TABLE api_runs ALTER COLUMN mlflow_run_id DROP NOT NULL;
"""
PENDING, COMPLETE = "pending", "complete"


class StoreUnavailable(Exception):
    """Postgres could not complete the operation in time."""


@dataclass(frozen=True)
class RunRow:
    id: uuid.UUID
    experiment: str
    experiment_id: str  # "" while pending
    mlflow_run_id: str  # "" while pending
    run_name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: str = ""
    state: str = COMPLETE
    idempotency_key: str | None = None
    request_hash: str = ""

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> RunRow:
        return cls(
            rec["id"],
            rec["experiment"],
            rec["experiment_id"] or "",
            rec["mlflow_run_id"] or "",
            rec["run_name"],
            rec["params"],
            rec["metrics"],
            rec["created_at"].isoformat(),
            rec["state"],
            rec["idempotency_key"],
            rec["request_hash"] or "",
        )


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

    async def _run(self, what: str, query: str, args: tuple[object, ...]) -> list[dict[str, Any]]:
        """One statement on a connection of its own; every row it returns."""
        try:
            async with asyncio.timeout(self.timeout * 3), self._connection() as conn:
                cur = await conn.execute(query.encode(), args)
                return await cur.fetchall() if cur.description else []
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise StoreUnavailable(f"{what} failed: {type(exc).__name__}") from exc

    async def begin(self, row: RunRow, lease: float, owner: uuid.UUID) -> tuple[RunRow, bool]:
        """The intent: a pending row claimed by ``owner`` for ``lease`` seconds. Returns it and
        True, or, when a row holds the same idempotency key already, that row and False (nothing
        written)."""
        created = await self._run(
            "insert",
            "INSERT INTO api_runs (id, experiment, run_name, params, metrics, state, idempotency_key,"
            " request_hash, claimed_until, claimed_by) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s,"
            " now() + make_interval(secs => %s), %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
            (
                row.id,
                row.experiment,
                row.run_name,
                json.dumps(row.params),
                json.dumps(row.metrics),
                row.idempotency_key,
                row.request_hash,
                lease,
                owner,
            ),
        )
        if created:
            return RunRow.from_record(created[0]), True
        found = await self._run("read", "SELECT * FROM api_runs WHERE idempotency_key = %s", (row.idempotency_key,))
        if not found:  # the holder of the key went away between the two statements: try again
            return await self.begin(row, lease, owner)
        return RunRow.from_record(found[0]), False

    async def claim(self, run_id: uuid.UUID, lease: float, owner: uuid.UUID) -> bool:
        """Take a pending row for ``owner`` for ``lease`` seconds; False when another request's
        lease on it still runs."""
        return bool(
            await self._run(
                "claim",
                "UPDATE api_runs SET claimed_until = now() + make_interval(secs => %s), claimed_by = %s"
                " WHERE id = %s AND state = 'pending' AND (claimed_until IS NULL OR claimed_until < now())"
                " RETURNING id",
                (lease, owner, run_id),
            )
        )

    async def held_for(self, run_id: uuid.UUID) -> float:
        """Seconds until the lease on the row runs out (0 when none runs)."""
        found = await self._run(
            "read",
            "SELECT GREATEST(0, EXTRACT(EPOCH FROM claimed_until - now()))::float AS left FROM api_runs WHERE id = %s",
            (run_id,),
        )
        return float(found[0]["left"] or 0) if found else 0.0

    async def release(self, run_id: uuid.UUID, owner: uuid.UUID) -> None:
        """Give a pending row back at once (the request failed; a retry need not wait the lease);
        only its owner can."""
        await self._run(
            "release",
            "UPDATE api_runs SET claimed_until = NULL, claimed_by = NULL WHERE id = %s AND state = 'pending'"
            " AND claimed_by = %s",
            (run_id, owner),
        )

    async def complete(
        self, run_id: uuid.UUID, experiment_id: str, mlflow_run_id: str, owner: uuid.UUID
    ) -> RunRow | None:
        """The row completed with its MLflow run by ``owner``; None when ``owner`` holds it no
        more (another request took it over, or completed it: a complete row is never rewritten)."""
        done = await self._run(
            "update",
            "UPDATE api_runs SET state = 'complete', experiment_id = %s, mlflow_run_id = %s, claimed_until = NULL"
            " WHERE id = %s AND state = 'pending' AND claimed_by = %s RETURNING *",
            (experiment_id, mlflow_run_id, run_id, owner),
        )
        return RunRow.from_record(done[0]) if done else None

    async def get(self, run_id: uuid.UUID) -> RunRow | None:
        found = await self._run("read", "SELECT * FROM api_runs WHERE id = %s", (run_id,))
        return RunRow.from_record(found[0]) if found else None


def migrate(dsn: str, connect_timeout: int = 5) -> None:
    """Create the table; used by the entrypoint once Postgres answers."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
        conn.execute(SCHEMA)
