"""Benchmark: the api's Postgres access (``services/api/store.py``: a connection kept idle between
operations, checked before it serves again) beside a connection per operation (what the Store did
before) and a psycopg_pool pool with bounded reconnect, on the same local Postgres in the same run.

    .venv/bin/python bench/store_pool.py [--concurrency 8] [--seconds 10] [--restarts 2] [--down 1 10]

Two figures per approach: throughput and latency of the api's write-and-read (an INSERT and a SELECT
by id, as POST /runs and GET /runs/{id} do) with N concurrent tasks; and recovery after a Postgres
restart: with one operation every 50 ms running, seconds from Postgres accepting queries again to
the first operation that succeeds. The pool runs with the settings a bounded reconnect needs:
``check`` (a connection is tested before it is handed out, so one broken by the restart is not),
``reconnect_timeout`` and ``timeout`` at the api's own deadlines. Not a test: figures depend on
the machine; docs/measured.md records them."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closed_loop import closed_loop, percentile_ms  # noqa: E402

from harness.session import Session  # noqa: E402
from harness.stack import postgres  # noqa: E402
from harness.stack.config import StackConfig  # noqa: E402
from harness.stack.runtime.local import LocalRuntime  # noqa: E402
from harness.wait import wait_until  # noqa: E402
from services.api.store import Store  # noqa: E402

SCHEMA = "CREATE TABLE IF NOT EXISTS bench_runs (id uuid PRIMARY KEY, params jsonb NOT NULL)"
TIMEOUT = 1.0  # the api's API_DB_TIMEOUT: one operation's deadline


class PerOperation:
    name = "connection per operation (the api's Store until 0.6)"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def op(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
            await _write_read(conn)


class Pooled:
    name = "psycopg_pool, bounded reconnect"

    def __init__(self, dsn: str, size: int) -> None:
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=2,
            max_size=size,
            open=False,
            timeout=TIMEOUT,
            reconnect_timeout=10,
            check=AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True, "connect_timeout": 2},
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=10)

    async def close(self) -> None:
        await self.pool.close()

    async def op(self) -> None:
        async with self.pool.connection() as conn:
            await _write_read(conn)


class Kept:
    name = "the api's Store: kept idle, checked on borrow"

    def __init__(self, dsn: str, size: int) -> None:
        self.store = Store(dsn, timeout=TIMEOUT, max_connections=size)

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def op(self) -> None:
        async with self.store._connection() as conn:  # noqa: SLF001 - the Store's own access, with the same statements
            await _write_read(conn)


async def _write_read(conn: psycopg.AsyncConnection) -> None:
    rid = uuid.uuid4()
    await conn.execute("INSERT INTO bench_runs (id, params) VALUES (%s, %s)", (rid, json.dumps({"k": "v"})))
    cur = await conn.execute("SELECT params FROM bench_runs WHERE id = %s", (rid,))
    await cur.fetchone()


async def throughput(store, concurrency: int, seconds: float) -> tuple[float, float, float, int]:
    async def op() -> None:
        async with asyncio.timeout(TIMEOUT * 3):
            await store.op()

    latencies, errors = await closed_loop(op, concurrency, seconds)
    return len(latencies) / seconds, percentile_ms(latencies, 0.5), percentile_ms(latencies, 0.99), errors


async def recovery(store, svc, dsn: str, down: float) -> float:
    """Restart Postgres under a probe every 50 ms; seconds from Postgres answering to the store's
    first success."""
    successes: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(TIMEOUT * 3):
                    await store.op()
                successes.append(time.monotonic())
            except Exception:  # noqa: BLE001 - failures are expected while it is down
                pass
            await asyncio.sleep(0.05)

    task = asyncio.ensure_future(probe())
    await asyncio.sleep(0.5)
    await asyncio.to_thread(svc.stop, 10)
    down_at = time.monotonic()
    await asyncio.sleep(down)
    await asyncio.to_thread(svc.start)
    await asyncio.to_thread(
        wait_until, lambda: postgres.ready(dsn), timeout=30, interval=0.02, what="postgres to accept queries again"
    )
    up_at = time.monotonic()
    deadline = up_at + 60
    while time.monotonic() < deadline and not [t for t in successes if t > up_at]:
        await asyncio.sleep(0.02)
    stop.set()
    await task
    after = [t for t in successes if t > down_at]
    return max(0.0, round(after[0] - up_at, 2)) if after else float("inf")  # 0: before the ready poll saw it


async def run(dsn: str, svc, args: argparse.Namespace) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(SCHEMA)
    rows = []
    for store in (PerOperation(dsn), Pooled(dsn, args.concurrency), Kept(dsn, args.concurrency)):
        await store.open()
        try:
            rps, p50, p99, errors = await throughput(store, args.concurrency, args.seconds)
            recoveries = [await recovery(store, svc, dsn, down) for down in args.down for _ in range(args.restarts)]
        finally:
            await store.close()
        rows.append((store.name, rps, p50, p99, errors, recoveries))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--restarts", type=int, default=2, help="restarts per down time")
    ap.add_argument("--down", type=float, nargs="+", default=[1.0, 10.0], help="seconds Postgres stays down")
    args = ap.parse_args()
    session, config = Session(), StackConfig()
    svc = LocalRuntime(session).start(postgres.POSTGRES, config, {})
    try:
        dsn = f"{svc.url}/postgres"
        wait_until(lambda: postgres.ready(dsn), timeout=30, what="postgres up")
        rows = asyncio.run(run(dsn, svc, args))
    finally:
        svc.close(10)
        session.close()
    print(
        f"\n{time.strftime('%Y-%m-%d')}: {args.concurrency} concurrent tasks, {args.seconds:.0f} s each; "
        f"an INSERT and a SELECT per operation; local Postgres on the same machine ({os.cpu_count()} cores)\n"
    )
    downs = ", ".join(f"{d:g} s" for d in args.down for _ in range(args.restarts))
    print(f"| access | ops/s | p50 ms | p99 ms | errors | recovery after a restart, s (Postgres down {downs}) |")
    print("|---|---|---|---|---|---|")
    for name, rps, p50, p99, errors, rec in rows:
        print(f"| {name} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {errors} | {', '.join(f'{r:g}' for r in rec)} |")


if __name__ == "__main__":
    main()
