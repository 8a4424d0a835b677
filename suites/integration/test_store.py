"""The api's Postgres access against the stack's real Postgres: a connection is kept between
operations (a fresh one per operation paid a TLS and SCRAM handshake each time, and held the
write path to 0.62 x MLflow's throughput), yet an operation after Postgres went away and came back,
froze and resumed, or after the network path under a kept connection went silent, does not fail
on a connection kept from before."""

import asyncio
import uuid

import psycopg
import pytest

from harness.stack import postgres
from harness.stack.pgwire import proxy_tls
from harness.stack.proxy import FaultProxy
from harness.stack.toxics import Blackhole
from harness.wait import wait_until
from services.api.store import Store, StoreUnavailable

pytestmark = pytest.mark.integration


def store(dsn: str) -> Store:
    return Store(dsn, timeout=1.0, max_connections=4)


def named(dsn: str) -> tuple[str, str]:
    """The DSN with an application name of its own, so Postgres can say which backends are the store's."""
    name = f"store-test-{uuid.uuid4().hex[:8]}"
    return f"{dsn}{'&' if '?' in dsn else '?'}application_name={name}", name


def backends(dsn: str, name: str) -> set[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchall()
    return {pid for (pid,) in rows}


def test_sequential_operations_share_one_connection(pg_dsn):
    dsn, name = named(pg_dsn)

    async def scenario() -> list[set[int]]:
        s, seen = store(dsn), []
        try:
            for _ in range(5):
                assert await s.get(uuid.uuid4()) is None
                seen.append(await asyncio.to_thread(backends, pg_dsn, name))
            return seen
        finally:
            await s.close()

    seen = asyncio.run(scenario())
    assert len(seen[0]) == 1 and all(pids == seen[0] for pids in seen), seen
    # a closed connection's backend leaves pg_stat_activity a moment after the client closed it
    wait_until(lambda: backends(pg_dsn, name), until=lambda pids: not pids, timeout=5, what="close() to end it")


def test_concurrent_operations_open_at_most_their_number_of_connections(pg_dsn):
    dsn, name = named(pg_dsn)

    async def scenario() -> set[int]:
        s, seen = store(dsn), set()
        try:
            for _ in range(5):
                await asyncio.gather(*(s.get(uuid.uuid4()) for _ in range(3)))
                seen |= await asyncio.to_thread(backends, pg_dsn, name)
            return seen
        finally:
            await s.close()

    assert 1 <= len(asyncio.run(scenario())) <= 3


def test_the_health_check_always_connects_afresh(pg_dsn):
    """/health/deep answers whether a new connection works, which a kept one cannot tell."""

    async def scenario() -> int:
        s = store(pg_dsn)
        try:
            await s.get(uuid.uuid4())
            await s.ping()
            await s.ping()
            return s.connections_opened
        finally:
            await s.close()

    assert asyncio.run(scenario()) == 3


@pytest.mark.disruptive
def test_the_first_operation_after_a_postgres_restart_succeeds(restored, budgets):
    """Connections kept from before the restart are dead; the first operation once Postgres
    answers again must not fail on one of them (nor wait out a reconnect backoff)."""
    stack = restored
    dsn, pg = stack.dsn("api"), stack.services["postgres"]

    async def scenario() -> None:
        s = store(dsn)
        try:
            await asyncio.gather(*(s.get(uuid.uuid4()) for _ in range(3)))  # three kept
            await asyncio.to_thread(pg.restart, 10)
            await asyncio.to_thread(
                wait_until, lambda: postgres.ready(dsn), timeout=budgets.http, what="postgres to answer again"
            )
            loop = asyncio.get_running_loop()
            started = loop.time()
            for _ in range(3):
                assert await s.get(uuid.uuid4()) is None
            assert loop.time() - started < 1.0, "the first operations after the restart waited"
        finally:
            await s.close()

    asyncio.run(scenario())


@pytest.mark.disruptive
def test_operations_fail_within_their_deadline_while_postgres_is_frozen_and_succeed_after(restored, budgets):
    """While Postgres is frozen an operation fails within its deadline (the kept connection's check
    does not answer and it is dropped; a fresh connection hangs too); once Postgres resumes,
    operations succeed."""
    stack = restored
    dsn, pg = stack.dsn("api"), stack.services["postgres"]

    async def scenario() -> None:
        s = store(dsn)
        try:
            await s.get(uuid.uuid4())
            await asyncio.to_thread(pg.pause)
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(StoreUnavailable):
                    await s.get(uuid.uuid4())
                assert loop.time() - started < s.timeout * 3 + 0.5
            finally:
                await asyncio.to_thread(pg.resume)
            await asyncio.to_thread(
                wait_until, lambda: postgres.ready(dsn), timeout=budgets.http, what="postgres to answer again"
            )
            assert await s.get(uuid.uuid4()) is None
        finally:
            await s.close()

    asyncio.run(scenario())


def test_a_kept_connection_gone_silent_costs_one_check_not_a_failed_operation(stack, budgets):
    """The path under a kept connection goes silent while new connections still get through (a
    failover whose old primary vanished without resetting its connections, a NAT that dropped
    them): the operation drops it after one bounded check and connects afresh. psycopg's own
    answer to a cancelled query (a cancel request, then up to 5 s and 5 s more) would have failed
    the operation."""
    pg = stack.services["postgres"]
    # Postgres' own certificate (the same names get the same one), or SCRAM's channel binding fails
    tls = proxy_tls(stack.config.authority, (*postgres.NAMES, stack.runtime.proxy_host()), "127.0.0.1")
    with FaultProxy(("127.0.0.1", pg.host_port), name="store-test", tls=tls) as proxy:
        dsn = stack.dsn("api").replace(f"127.0.0.1:{pg.host_port}", f"127.0.0.1:{proxy.port}")

        async def scenario() -> float:
            s = store(dsn)
            try:
                await asyncio.gather(*(s.get(uuid.uuid4()) for _ in range(3)))  # three kept
                proxy.add(Blackhole(limit=0))  # live connections go silent; new ones get through
                try:
                    loop = asyncio.get_running_loop()
                    started = loop.time()
                    assert await s.get(uuid.uuid4()) is None
                    return loop.time() - started
                finally:
                    proxy.remove("blackhole")
            finally:
                await s.close()

        took = asyncio.run(scenario())
    assert took < Store.CHECK_TIMEOUT + 1.0, f"the operation took {took:.2f}s"
