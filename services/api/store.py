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
from psycopg import generators, pq
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
    """At most ``max_connections`` connections; one that served an operation is kept idle for the
    next, and checked before it serves again.

    Chosen with the numbers (``bench/store_pool.py``, docs/measured.md "Benchmarks"). A fresh
    connection per operation pays a TLS and SCRAM handshake on both sides, most of a short
    operation's time and of the CPU it takes; a pool (psycopg_pool 3.3 with ``check`` and
    ``reconnect_timeout``) is over 20 times faster but came back 0.4 to 2 s after Postgres did:
    its workers reconnect with a backoff while callers wait. So no pool and no background work: an
    operation takes the most recently used idle connection and checks it with an empty query, one
    round trip bounded by ``CHECK_TIMEOUT``. When the check fails, Postgres went away (or
    the network path to it did) since the connection was kept: every idle connection is closed,
    and the operation connects afresh at once, as a fresh connection per operation did. A
    connection idle longer than ``IDLE_LIMIT`` is closed rather than checked (a NAT or a proxy may
    have dropped it silently); one that failed or was cut short is never kept. Statements are never
    prepared on the server (``prepare_threshold=None``): a kept connection would otherwise keep a
    plan of ``SELECT *`` that a migration adding a column breaks. The health check always connects
    afresh: it answers whether a new task could connect, not whether an old connection still
    works."""

    CHECK_TIMEOUT = 0.5  # seconds an idle connection has to answer its check before it is dropped
    IDLE_LIMIT = 60.0  # seconds a connection may sit idle and still be checked for reuse

    def __init__(self, dsn: str, *, timeout: float, max_connections: int) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        # (connection, when it went idle on the loop's clock), most recently used last
        self._idle: list[tuple[psycopg.AsyncConnection[dict[str, Any]], float]] = []
        self.connections_opened = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        await self._drop_idle()

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()

    async def _borrow(self) -> psycopg.AsyncConnection[dict[str, Any]] | None:
        """The most recently used idle connection, when it answered its check; else None, every
        idle connection closed: the others are older (idle too long as well), or were kept from
        before Postgres went away, as this one was."""
        if not self._idle:
            return None
        conn, since = self._idle.pop()
        if asyncio.get_running_loop().time() - since <= self.IDLE_LIMIT and await self._answers(conn):
            return conn
        await conn.close()
        await self._drop_idle()
        return None

    async def _answers(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> bool:
        """Whether ``conn`` answers an empty query within ``CHECK_TIMEOUT``. Not ``conn.execute``
        under ``asyncio.timeout``: psycopg meets a cancelled query by asking the server to cancel
        it on a new connection and waiting up to 5 s, then 5 s more, for the answer, which a
        connection to a host that went away never gives. psycopg's own wait with a timeout
        (``AsyncConnection.wait``, over its generator for a sent query; psycopg 3.3) stops
        without that, and the connection is closed."""
        try:
            conn.pgconn.send_query(b"")
            results = await conn.wait(generators._execute(conn.pgconn), timeout=min(self.CHECK_TIMEOUT, self.timeout))
        except (psycopg.Error, OSError):  # psycopg's timeout is an OperationalError too
            return False
        return [r.status for r in results] == [pq.ExecStatus.EMPTY_QUERY]

    @asynccontextmanager
    async def _connection(self, fresh: bool = False) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        async with self._slots:
            conn = None if fresh else await self._borrow()
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, row_factory=dict_row, prepare_threshold=None
                )
                self.connections_opened += 1
            try:
                yield conn
            except BaseException:
                await conn.close()  # failed, timed out or cancelled mid-statement: its state is unknown
                raise
            if fresh or conn.closed:
                await conn.close()
            else:
                self._idle.append((conn, asyncio.get_running_loop().time()))

    async def ping(self) -> None:
        """A real round trip on a fresh connection."""
        async with self._connection(fresh=True) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_catalog.pg_class LIMIT 1")
            await cur.fetchone()

    async def _run(self, what: str, query: str, args: tuple[object, ...]) -> list[dict[str, Any]]:
        """One statement on a connection it holds alone while it runs; every row it returns."""
        try:
            async with asyncio.timeout(self.timeout * 3), self._connection() as conn:
                cur = await conn.execute(query.encode(), args)
                return await cur.fetchall() if cur.description else []
        except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction, TimeoutError) as exc:
            # read-only: a kept connection to a primary that was demoted in a failover
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
