"""Safe retries against real Postgres and real MLflow: the Idempotency-Key of POST /runs, the
lease on a pending row, and a read that finishes a write cut short. Each checks the stores
themselves (Postgres' rows, MLflow's runs by their ``api_run_id`` tag), not only the answers."""

import concurrent.futures
import time
import uuid

import httpx
import psycopg
import pytest

from harness.faults.writer import tagged_runs

pytestmark = pytest.mark.integration


def body(experiment: str, i: int = 1) -> dict:
    return {"experiment": experiment, "name": f"r{i}", "params": {"i": str(i)}, "metrics": {"m": float(i)}}


def rows(pg_dsn: str, key: str) -> list[tuple]:
    with psycopg.connect(pg_dsn) as conn:
        return conn.execute(
            "SELECT id::text, state, mlflow_run_id FROM api_runs WHERE idempotency_key = %s", (key,)
        ).fetchall()


@pytest.fixture
def experiment() -> str:
    return f"idem-{uuid.uuid4().hex[:8]}"


def test_the_same_key_and_body_record_one_run_and_answer_it_again(api_url, mlflow_url, pg_dsn, experiment):
    key = {"Idempotency-Key": f"{experiment}-1"}
    first = httpx.post(f"{api_url}/runs", json=body(experiment), headers=key, timeout=10)
    again = httpx.post(f"{api_url}/runs", json=body(experiment), headers=key, timeout=10)
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and again.json()["mlflow_run_id"] == first.json()["mlflow_run_id"]
    assert rows(pg_dsn, key["Idempotency-Key"]) == [(first.json()["id"], "complete", first.json()["mlflow_run_id"])]
    with httpx.Client() as client:
        runs = tagged_runs(client, mlflow_url, experiment)
    assert list(runs) == [first.json()["id"]] and len(runs[first.json()["id"]]) == 1


def test_the_same_key_with_another_body_is_409(api_url, pg_dsn, experiment):
    key = {"Idempotency-Key": f"{experiment}-1"}
    assert httpx.post(f"{api_url}/runs", json=body(experiment, 1), headers=key, timeout=10).status_code == 201
    other = httpx.post(f"{api_url}/runs", json=body(experiment, 2), headers=key, timeout=10)
    assert other.status_code == 409 and other.json()["error"] == "idempotency key reused", other.text
    assert len(rows(pg_dsn, key["Idempotency-Key"])) == 1


def test_concurrent_requests_with_one_key_record_one_run(api_url, mlflow_url, pg_dsn, experiment):
    key = {"Idempotency-Key": f"{experiment}-race"}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: httpx.post(f"{api_url}/runs", json=body(experiment), headers=key, timeout=20), range(4))
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}, [a.text for a in answers]
    (row,) = rows(pg_dsn, key["Idempotency-Key"])
    assert {a.json()["id"] for a in answers if a.status_code in (200, 201)} == {row[0]}
    with httpx.Client() as client:
        assert len(tagged_runs(client, mlflow_url, experiment).get(row[0], [])) == 1


def pending(pg_dsn: str, experiment: str, key: str | None, lease_seconds: float) -> str:
    """A write cut short after its intent: a pending row, its lease ending in ``lease_seconds``."""
    rid = str(uuid.uuid4())
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "INSERT INTO api_runs (id, experiment, run_name, params, metrics, state, idempotency_key, request_hash,"
            " claimed_until) VALUES (%s, %s, 'cut', '{\"i\": \"1\"}', '{\"m\": 1.0}', 'pending', %s, 'x',"
            " now() + make_interval(secs => %s))",
            (rid, experiment, key, lease_seconds),
        )
    return rid


def test_a_pending_row_held_by_a_live_request_is_409_and_free_once_its_lease_ends(api_url, pg_dsn, experiment):
    key = f"{experiment}-held"
    held = httpx.post(f"{api_url}/runs", json=body(experiment), headers={"Idempotency-Key": key}, timeout=10)
    assert held.status_code == 201
    with psycopg.connect(pg_dsn) as conn:  # as if that write had been cut short, its lease still running
        conn.execute(
            "UPDATE api_runs SET state = 'pending', claimed_until = now() + interval '1 hour'"
            " WHERE idempotency_key = %s",
            (key,),
        )
    busy = httpx.post(f"{api_url}/runs", json=body(experiment), headers={"Idempotency-Key": key}, timeout=10)
    assert busy.status_code == 409 and 3590 <= int(busy.headers["retry-after"]) <= 3600, busy.text
    with psycopg.connect(pg_dsn) as conn:  # the lease runs out
        conn.execute(
            "UPDATE api_runs SET claimed_until = now() - interval '1 second' WHERE idempotency_key = %s", (key,)
        )
    done = httpx.post(f"{api_url}/runs", json=body(experiment), headers={"Idempotency-Key": key}, timeout=10)
    assert done.status_code == 201 and done.json()["id"] == held.json()["id"], done.text
    assert done.json()["mlflow_run_id"] == held.json()["mlflow_run_id"], "the existing MLflow run, not a second one"


def test_a_read_finishes_a_write_cut_short(api_url, mlflow_url, pg_dsn, experiment):
    rid = pending(pg_dsn, experiment, None, -1)
    read = httpx.get(f"{api_url}/runs/{rid}", timeout=10)
    assert read.status_code == 200, read.text
    assert read.json()["params"] == {"i": "1"} and read.json()["mlflow_status"] == "FINISHED"
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT state FROM api_runs WHERE id = %s", (rid,)).fetchone() == ("complete",)
    with httpx.Client() as client:
        assert len(tagged_runs(client, mlflow_url, experiment)[rid]) == 1


def test_mlflow_starts_no_create_past_the_callers_deadline(mlflow_url, experiment):
    """The fence the claim lease relies on, in the real MLflow: a create whose caller already gave
    up is refused (504 DEADLINE_EXCEEDED) and makes no run; one in time is made."""
    with httpx.Client(timeout=10) as client:
        made = client.post(f"{mlflow_url}/api/2.0/mlflow/experiments/create", json={"name": experiment})
        exp_id = made.json()["experiment_id"]
        create = {"experiment_id": exp_id, "tags": [{"key": "api_run_id", "value": "fenced"}]}
        late = client.post(
            f"{mlflow_url}/api/2.0/mlflow/runs/create",
            json=create,
            headers={"X-Request-Deadline": f"{time.time() - 1:.3f}"},
        )
        assert late.status_code == 504 and late.json()["error_code"] == "DEADLINE_EXCEEDED", late.text
        assert tagged_runs(client, mlflow_url, experiment) == {}
        in_time = client.post(
            f"{mlflow_url}/api/2.0/mlflow/runs/create",
            json=create,
            headers={"X-Request-Deadline": f"{time.time() + 5:.3f}"},
        )
        assert in_time.status_code == 200, in_time.text
        assert list(tagged_runs(client, mlflow_url, experiment)) == ["fenced"]
