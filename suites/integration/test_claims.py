"""Claims on a pending row against real Postgres, from two api tasks at once: the runs service of
each task over the real ``Store`` (the stack's own database), MLflow faked at the transport so the
test decides when each call answers. What Postgres holds afterwards is the verdict.

The holes these close: a request that outlived its lease could give back, or complete over,
another request's claim (a claim had no owner), and a read held its claim while it queued for an
MLflow slot."""

import asyncio
import uuid

import httpx
import psycopg
import pytest

from services.api.bulkhead import Bulkhead
from services.api.mlflow_client import MlflowClient
from services.api.runs import RunsService, Unavailable
from services.api.schemas import RunIn
from services.api.store import Store
from suites.unit.fakes import FakeMlflow

pytestmark = pytest.mark.integration


def task(
    dsn: str, mlflow: FakeMlflow, *, lease: float = 1.0, queue_wait: float = 5.0, request_timeout: float = 0.5
) -> RunsService:
    """One api task's runs service: its own bulkheads, the shared Postgres and MLflow."""
    client = MlflowClient(
        "http://mlflow:5000/mlflow", timeout=0.5, retries=0, backoff=0, transport=httpx.MockTransport(mlflow.handle)
    )
    return RunsService(
        Store(dsn, timeout=1.0, max_connections=4),
        client,
        db_slots=Bulkhead("postgres", 2, queue_wait),
        mlflow_slots=Bulkhead("mlflow", 2, queue_wait),
        request_timeout=request_timeout,
        lease=lease,
    )


def row_of(dsn: str, key: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, state, mlflow_run_id, claimed_until > now() FROM api_runs WHERE idempotency_key = %s", (key,)
        ).fetchone()


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` (a blocking call, run off the loop) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await asyncio.to_thread(predicate)
        if last:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: still not so after {timeout}s (last: {last!r})")


@pytest.fixture
def key() -> str:
    return f"claims-{uuid.uuid4().hex[:8]}"


def test_a_request_that_outlived_its_lease_never_rewrites_the_answered_row(pg_dsn, key):
    """Task 1's write made MLflow run R1, then waited for a Postgres slot past its lease; task 2's
    retry claimed the row, did not find R1 (its search ran before R1 was visible), made R2,
    completed the row and answered R2. Task 1 then reaches Postgres: it must not rewrite the row to
    R1, and R1, a duplicate it made itself, must not stay active."""
    mlflow = FakeMlflow()
    body = RunIn(experiment=key, params={"a": "b"})

    async def scenario():
        # task 1's lease is shorter than its own path (the configuration check now refuses that;
        # a request cut off from Postgres or MLflow long enough gets there too)
        one, two = task(pg_dsn, mlflow, lease=0.3, request_timeout=5.0), task(pg_dsn, mlflow)
        at_update, go_on = mlflow.hold("/runs/update")  # R1 made; task 1 about to finish it
        writer = asyncio.create_task(one.write(body, key))
        await at_update.wait()
        await until(lambda: row_of(pg_dsn, key)[3] is False, "task 1's lease ran out")
        mlflow.hide_from_search = set(mlflow.runs)  # task 2's search ran before R1 was visible
        answered, recorded = await two.write(body, key)
        go_on.set()
        late = await writer
        return answered, recorded, late

    answered, recorded, (late, late_recorded) = asyncio.run(scenario())
    rid, state, mlflow_run_id, _ = row_of(pg_dsn, key)
    assert recorded and state == "complete" and mlflow_run_id == answered.mlflow_run_id, "the answered row stands"
    assert late.mlflow_run_id == answered.mlflow_run_id and not late_recorded, "task 1 answers the row as it stands"
    active = [
        r for r, run in mlflow.runs.items() if run["tags"].get("api_run_id") == str(rid) and r not in mlflow.deleted
    ]
    assert active == [answered.mlflow_run_id], "the duplicate task 1 made is removed"


def test_a_request_that_lost_its_claim_can_neither_give_it_back_nor_complete_it(pg_dsn, key):
    """The store's side of it: a claim belongs to the request that made it. Once task 1's lease ran
    out and task 2 claimed the row, task 1's release leaves task 2's claim in place and task 1's
    completion changes nothing; task 2's completion stands, and nothing rewrites it."""
    mlflow = FakeMlflow()

    async def scenario():
        one, two = task(pg_dsn, mlflow), task(pg_dsn, mlflow)
        intent = one.intent(RunIn(experiment=key), key)
        owner_1, owner_2 = uuid.uuid4(), uuid.uuid4()
        row, fresh = await one.store.begin(intent, 0.2, owner_1)
        await until(lambda: row_of(pg_dsn, key)[3] is False, "task 1's lease ran out")
        taken = await two.store.claim(row.id, 30.0, owner_2)
        await one.store.release(row.id, owner_1)
        still_held = row_of(pg_dsn, key)[3]
        lost = await one.store.complete(row.id, "1", "r1", owner_1)
        after_lost = row_of(pg_dsn, key)[1:3]
        done = await two.store.complete(row.id, "1", "r2", owner_2)
        again = await one.store.complete(row.id, "1", "r1", owner_1)
        again_by_owner = await two.store.complete(row.id, "1", "r3", owner_2)
        return fresh, taken, still_held, lost, after_lost, done, again, again_by_owner

    fresh, taken, still_held, lost, after_lost, done, again, again_by_owner = asyncio.run(scenario())
    assert fresh and taken and still_held, "task 1's release gave back task 2's claim"
    assert lost is None and after_lost == ("pending", None), "task 1 completed a row it no longer held"
    assert done is not None and done.mlflow_run_id == "r2"
    assert again is None and again_by_owner is None, "an answered row was rewritten"
    assert row_of(pg_dsn, key)[1:3] == ("complete", "r2")


def test_a_read_takes_its_mlflow_slot_before_it_claims_the_row(pg_dsn, key):
    """A read of a pending row that queues for an MLflow slot holds no claim while it queues: the
    same row read on another task meanwhile is finished there, not refused as being written."""
    mlflow = FakeMlflow()
    body = RunIn(experiment=key, params={"a": "b"})

    async def scenario():
        one, two = task(pg_dsn, mlflow, queue_wait=3.0), task(pg_dsn, mlflow)
        mlflow.status = 503
        with pytest.raises(Unavailable):
            await one.write(body, key)
        mlflow.status = 200
        rid = row_of(pg_dsn, key)[0]
        async with one.mlflow_slots.slot(), one.mlflow_slots.slot():  # task 1's MLflow slots all busy
            queued = asyncio.create_task(one.read(rid))
            await until(lambda: one.mlflow_slots.waiting == 1, "task 1's read queues for an MLflow slot")
            read = await two.read(rid)
            queued.cancel()
        return read

    read = asyncio.run(scenario())
    assert read.mlflow_status == "FINISHED" and row_of(pg_dsn, key)[1] == "complete"
