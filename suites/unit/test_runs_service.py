"""The idempotent write without HTTP: ``RunsService`` over the in-memory store and MLflow's REST API
faked at the transport. Each scenario runs in one event loop; what the stores hold afterwards is
the verdict, not only what the service answered."""

import asyncio
import uuid

import httpx
import pytest

from services.api.bulkhead import Bulkhead, Overloaded
from services.api.mlflow_client import MlflowClient
from services.api.runs import (
    RUN_TAG,
    BeingWritten,
    KeyInProgress,
    KeyReused,
    MlflowRefusedRun,
    RunMissingInMlflow,
    RunNotFound,
    RunsService,
    Unavailable,
)
from services.api.schemas import RunIn
from services.api.store import StoreUnavailable
from suites.unit.fakes import FakeMlflow, FakeStore

pytestmark = pytest.mark.unit

BODY = RunIn(experiment="exp", params={"a": "b"}, metrics={"m": 1.5})
KEY = "k-1"


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def mlflow():
    return FakeMlflow()


@pytest.fixture
def make_runs(store, mlflow):
    """A service over the fakes; ``mlflow_limit`` and ``queue_wait`` size its MLflow bulkhead."""

    def make(mlflow_limit=4, queue_wait=0.1, lease=3.0):
        client = MlflowClient(
            "http://mlflow:5000/mlflow", timeout=0.5, retries=0, backoff=0, transport=httpx.MockTransport(mlflow.handle)
        )
        return RunsService(
            store,
            client,
            db_slots=Bulkhead("postgres", 4, queue_wait),
            mlflow_slots=Bulkhead("mlflow", mlflow_limit, queue_wait),
            request_timeout=1.0,
            lease=lease,
        )

    return make


@pytest.fixture
def runs(make_runs):
    return make_runs()


def tagged(mlflow, run_id):
    return [r for r in mlflow.runs.values() if r["tags"].get(RUN_TAG) == str(run_id)]


def test_a_write_begins_claims_records_and_answers_the_run(runs, store, mlflow):
    out, recorded = asyncio.run(runs.write(BODY, KEY))
    assert recorded
    row = store.rows[out.id]
    assert row.state == "complete" and row.idempotency_key == KEY and row.mlflow_run_id == out.mlflow_run_id
    assert store.claimed == set(), "completing the row ends its claim"
    (made,) = tagged(mlflow, out.id)
    assert made["info"] == {"run_id": out.mlflow_run_id, "status": "FINISHED"}
    assert made["data"]["params"] == [{"key": "a", "value": "b"}]
    assert (out.experiment, out.params, out.metrics, out.mlflow_status) == ("exp", {"a": "b"}, {"m": 1.5}, "FINISHED")


def test_a_retry_with_the_same_key_answers_the_same_run_and_records_nothing_more(runs, store, mlflow):
    async def scenario():
        first, _ = await runs.write(BODY, KEY)
        again, recorded = await runs.write(BODY, KEY)
        return first, again, recorded

    first, again, recorded = asyncio.run(scenario())
    assert not recorded and again == first
    assert list(store.rows) == [first.id] and len(mlflow.runs) == 1


def test_a_failure_at_mlflow_releases_the_claim_and_the_retry_finishes_the_same_row(runs, store, mlflow):
    async def scenario():
        mlflow.status = 503
        with pytest.raises(Unavailable, match=r"^mlflow: "):
            await runs.write(BODY, KEY)
        (row,) = store.rows.values()
        released = row.id not in store.claimed
        mlflow.status = 200
        out, recorded = await runs.write(BODY, KEY)
        return row, released, out, recorded

    row, released, out, recorded = asyncio.run(scenario())
    assert row.state == "pending" and released, "the failed write leaves its intent, claim given back"
    assert recorded and out.id == row.id and len(tagged(mlflow, row.id)) == 1
    assert store.rows[row.id].state == "complete"


def test_a_run_mlflow_refuses_is_refused_and_its_claim_released(runs, store, mlflow):
    mlflow.status = 400
    with pytest.raises(MlflowRefusedRun, match="MLflow answered 400"):
        asyncio.run(runs.write(BODY, KEY))
    (row,) = store.rows.values()
    assert row.pending and store.claimed == set()


def test_a_release_that_fails_leaves_the_mlflow_failure_as_the_answer(runs, store, mlflow):
    async def release_lost(run_id):
        raise ConnectionResetError("connection lost")

    store.release = release_lost
    mlflow.status = 503
    with pytest.raises(Unavailable, match=r"^mlflow: "):
        asyncio.run(runs.write(BODY, KEY))
    (row,) = store.rows.values()
    assert row.pending and row.id in store.claimed, "the lease, not the release, frees it now"


def test_a_lost_answer_from_mlflow_create_is_finished_by_the_retry_without_a_second_run(runs, store, mlflow):
    async def scenario():
        mlflow.lose_create_answer = True
        with pytest.raises(Unavailable, match="the run may still be made") as held:
            await runs.write(BODY, KEY)
        assert 2.5 <= held.value.retry_after <= 3.0, "the answer says when the lease ends"
        with pytest.raises(KeyInProgress):
            await runs.write(BODY, KEY)
        store.expire()
        return await runs.write(BODY, KEY)

    out, recorded = asyncio.run(scenario())
    (made,) = mlflow.runs.values()
    assert recorded and out.mlflow_run_id == made["info"]["run_id"] and made["info"]["status"] == "FINISHED"


def test_the_same_key_with_another_body_is_refused_and_records_nothing(runs, store, mlflow):
    async def scenario():
        await runs.write(BODY, KEY)
        await runs.write(RunIn(experiment="exp", params={"a": "c"}), KEY)

    with pytest.raises(KeyReused, match="another body"):
        asyncio.run(scenario())
    assert len(store.rows) == 1 and len(mlflow.runs) == 1


def test_a_key_whose_row_another_request_holds_is_in_progress(runs, store, mlflow):
    async def scenario():
        mlflow.status = 503
        with pytest.raises(Unavailable):
            await runs.write(BODY, KEY)
        store.claimed = set(store.rows)  # as if the first request still held its lease
        mlflow.status = 200
        await runs.write(BODY, KEY)

    with pytest.raises(KeyInProgress, match="still at work"):
        asyncio.run(scenario())
    assert mlflow.runs == {}


def test_postgres_down_refuses_the_write_before_mlflow_is_touched(runs, store, mlflow):
    store.down = True
    with pytest.raises(Unavailable, match=r"^postgres: insert failed"):
        asyncio.run(runs.write(BODY, KEY))
    assert store.rows == {} and mlflow.runs == {}


def test_a_lost_answer_from_the_row_update_leaves_a_complete_row_the_retry_answers(runs, store, mlflow):
    async def scenario():
        store.lose_complete_answer = True
        with pytest.raises(Unavailable, match=r"^postgres: "):
            await runs.write(BODY, KEY)
        return await runs.write(BODY, KEY)

    out, recorded = asyncio.run(scenario())
    assert not recorded and store.rows[out.id].state == "complete" and len(mlflow.runs) == 1
    assert mlflow.deleted == [], "nothing is deleted on a failure"


def test_a_read_answers_the_run_as_mlflow_holds_it(runs, mlflow):
    async def scenario():
        written, _ = await runs.write(BODY)
        mlflow.runs[written.mlflow_run_id]["data"]["metrics"].append({"key": "later", "value": 2.0})
        return written, await runs.read(written.id)

    written, read = asyncio.run(scenario())
    assert read.id == written.id and read.metrics == {"m": 1.5, "later": 2.0}


def test_a_read_finishes_a_write_cut_short(runs, store, mlflow):
    async def scenario():
        mlflow.lose_create_answer = True
        with pytest.raises(Unavailable):
            await runs.write(BODY)
        (row,) = store.rows.values()
        store.expire()
        return row, await runs.read(row.id)

    row, read = asyncio.run(scenario())
    assert read.id == row.id and read.params == {"a": "b"} and read.mlflow_status == "FINISHED"
    assert store.rows[row.id].state == "complete" and len(mlflow.runs) == 1


def test_a_read_of_an_unknown_run_or_of_a_row_being_written_is_refused(runs, store, mlflow):
    with pytest.raises(RunNotFound, match="no run"):
        asyncio.run(runs.read(uuid.uuid4()))
    mlflow.status = 503
    with pytest.raises(Unavailable):
        asyncio.run(runs.write(BODY))
    (row,) = store.rows.values()
    store.claimed = {row.id}
    with pytest.raises(BeingWritten):
        asyncio.run(runs.read(row.id))


def test_a_read_shed_before_an_mlflow_slot_gives_its_claim_back(make_runs, store, mlflow):
    """Every MLflow slot is taken: a read of a pending row claims it, is shed, and
    releases it, so the next reader need not wait out the lease."""
    runs = make_runs(mlflow_limit=1, queue_wait=0.05)

    async def scenario():
        mlflow.status = 503
        with pytest.raises(Unavailable):
            await runs.write(BODY)
        (pending,) = store.rows.values()
        mlflow.status = 200
        async with runs.mlflow_slots.slot():
            with pytest.raises(Overloaded):
                await runs.read(pending.id)
        return pending

    pending = asyncio.run(scenario())
    assert store.rows[pending.id].pending and store.claimed == set()


def test_an_mlflow_500_during_the_write_is_unavailable_not_a_refusal(runs, store, mlflow):
    """MLflow failing (500 INTERNAL_ERROR) is not MLflow refusing the run: the client must retry."""
    mlflow.status = 500
    with pytest.raises(Unavailable, match=r"^mlflow: .*HTTP 500"):
        asyncio.run(runs.write(BODY, KEY))
    (row,) = store.rows.values()
    assert row.pending


def test_a_create_that_lands_after_its_caller_gave_up_makes_no_second_run(make_runs, store, mlflow):
    """The ambiguous create: MLflow takes the create, the api's attempt times out (0.5 s), and
    MLflow makes the run 0.8 s after it began. A client retrying at once, and again whenever it is
    told, ends with one tagged run: the key stays held for the lease (1.2 s, longer than MLflow's
    0.8 s), so no retry searches before the late run is there."""
    runs = make_runs(lease=1.2)

    async def scenario():
        mlflow.late_create = 0.8
        answers = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while loop.time() < deadline:
            try:
                out, _ = await runs.write(BODY, KEY)
                answers.append("ok")
                return out, answers
            except (Unavailable, KeyInProgress) as exc:
                answers.append(type(exc).__name__)
                await asyncio.sleep(0.05)  # a client retrying as fast as it may
        raise AssertionError(f"no answer within 10 s: {answers}")

    out, answers = asyncio.run(scenario())
    (row,) = store.rows.values()
    active = [r for r in tagged(mlflow, row.id) if r["info"]["run_id"] not in mlflow.deleted]
    assert [r["info"]["run_id"] for r in active] == [out.mlflow_run_id], (answers, len(tagged(mlflow, row.id)))
    assert "KeyInProgress" in answers, "retries during the lease were told the key is held"


def test_a_resumed_write_keeps_the_oldest_tagged_run_and_deletes_the_others(runs, store, mlflow):
    """Two tagged runs for one pending row (the lease was too short once): the resumed write keeps
    the oldest and deletes the other."""

    async def scenario():
        mlflow.status = 503
        with pytest.raises(Unavailable):
            await runs.write(BODY, KEY)
        mlflow.status = 200
        (row,) = store.rows.values()
        client = runs.mlflow
        older = await client.create_run("1", "r", 1, {RUN_TAG: str(row.id)})
        newer = await client.create_run("1", "r", 2, {RUN_TAG: str(row.id)})
        out, _ = await runs.write(BODY, KEY)
        return older, newer, out

    older, newer, out = asyncio.run(scenario())
    assert out.mlflow_run_id == older and mlflow.deleted == [newer]


def test_a_write_that_could_not_complete_its_row_gives_the_claim_back(runs, store, mlflow):
    """MLflow's run is made and finished, the row's update fails: the claim is given back, so the
    client's retry finishes at once with that run instead of a 409 for the rest of the lease."""

    async def scenario():
        original = store.complete

        async def down(*args):
            raise StoreUnavailable("update failed: OperationalError")

        store.complete = down
        with pytest.raises(Unavailable, match="the run is made"):
            await runs.write(BODY, KEY)
        released = store.claimed == set()
        store.complete = original
        return released, await runs.write(BODY, KEY)

    released, (out, recorded) = asyncio.run(scenario())
    assert released and recorded and len(mlflow.runs) == 1 and out.mlflow_run_id in mlflow.runs


def test_a_read_of_a_run_deleted_in_mlflow_says_it_is_missing(runs, store, mlflow):
    async def scenario():
        out, _ = await runs.write(BODY, KEY)
        await runs.mlflow.delete_run(out.mlflow_run_id)
        await runs.read(out.id)

    with pytest.raises(RunMissingInMlflow, match="deleted"):
        asyncio.run(scenario())
