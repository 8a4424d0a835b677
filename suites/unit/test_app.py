"""The api over fake dependencies (httpx MockTransport for MLflow, an in-memory store):
HTTP mapping, correlation ids, JSON logs, redaction, validation, body limits, write atomicity."""

import asyncio
import io
import json
import socket
import time
import uuid

import httpx
import pytest

from services.api.app import create_app
from services.api.config import load_settings
from services.api.mlflow_client import MlflowClient
from services.api.store import Store
from services.common import jsonlog
from suites.unit.fakes import PASSWORD, FakeMlflow, FakeStore

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.setenv("API_DATABASE_URL", f"postgresql://app:{PASSWORD}@db:5432/api")
    monkeypatch.setenv("API_MLFLOW_URL", "http://mlflow:5000/mlflow")
    monkeypatch.setenv("API_HEALTH_CACHE_TTL", "0")
    monkeypatch.setenv("API_HEALTH_MAX_STALE", "0")
    monkeypatch.setenv("API_MLFLOW_RETRIES", "0")
    monkeypatch.setenv("API_MLFLOW_TIMEOUT", "0.5")
    monkeypatch.setenv("API_DB_TIMEOUT", "0.3")
    return load_settings()


@pytest.fixture
def logs(settings):
    stream = io.StringIO()
    jsonlog.configure("api", "INFO", (PASSWORD,), stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    jsonlog.configure("api", "INFO")


@pytest.fixture
def deps():
    return FakeStore(), FakeMlflow()


@pytest.fixture
def call(settings, deps, logs):
    store, fake = deps
    mlflow = MlflowClient(
        settings.mlflow_url,
        timeout=settings.mlflow_timeout,
        retries=0,
        backoff=0,
        transport=httpx.MockTransport(fake.handle),
    )
    app = create_app(settings, store=store, mlflow=mlflow)

    def do(method, path, **kw):
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    return do


def test_health_pass_is_200_health_json(call):
    r = call("GET", "/health")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/health+json")
    assert r.json()["status"] == "pass"


def test_required_dependency_down_from_the_start_is_503_not_in_service_and_secret_free(call, deps, logs):
    deps[0].down = True
    r = call("GET", "/health")
    assert r.status_code == 503 and r.json()["phase"] == "starting"
    assert r.json()["checks"]["postgres:responseTime"][0]["status"] == "fail"
    assert PASSWORD not in r.text
    line = [entry for entry in logs() if entry.get("path") == "/health"][-1]
    assert line["checks"]["postgres"]["status"] == "fail" and "refused" in line["checks"]["postgres"]["output"]
    assert PASSWORD not in json.dumps(logs())


def test_health_answers_name_the_failing_component_and_keep_its_error_in_the_log(call, deps, logs):
    """The public listener routes every path to the api, health included: its answers say status
    and component names only. Postgres' own text (host, port, the driver's words) stays in the log."""
    assert call("GET", "/health").status_code == 200
    deps[0].down = True
    for path in ("/health", "/health/deep"):
        r = call("GET", path)
        assert r.json()["checks"]["postgres:responseTime"][0]["status"] == "fail", r.text
        assert "postgres" in r.json()["output"], r.text
        assert "refused" not in r.text and "postgresql://" not in r.text and "@db" not in r.text, r.text
        line = [e for e in logs() if e.get("path") == path][-1]
        assert "refused" in line["checks"]["postgres"]["output"], line


def test_outage_after_entering_service_is_200_warn_on_health_and_503_on_deep(call, deps, logs):
    assert call("GET", "/health").status_code == 200
    deps[0].down = True
    lb, deep = call("GET", "/health"), call("GET", "/health/deep")
    assert lb.status_code == 200 and lb.json()["status"] == "warn" and lb.json()["phase"] == "serving"
    assert lb.json()["output"].startswith("dependency failing: postgres;")
    assert lb.json()["checks"]["postgres:responseTime"][0]["status"] == "fail"
    assert deep.status_code == 503 and deep.json()["status"] == "fail"
    assert deep.headers["content-type"].startswith("application/health+json")
    assert 'api_dependency_up{component="postgres"} 0.0' in call("GET", "/metrics").text
    lines = [e for e in logs() if e.get("path") == "/health"]
    assert lines[-1]["health"] == "warn" and lines[-1]["checks"]["postgres"]["status"] == "fail"
    assert PASSWORD not in json.dumps(logs()) + lb.text + deep.text
    deps[0].down = False
    assert call("GET", "/health").json()["status"] == "pass"
    assert 'api_dependency_up{component="postgres"} 1.0' in call("GET", "/metrics").text


def test_optional_mlflow_is_warn(monkeypatch, settings, logs):
    monkeypatch.setenv("API_REQUIRED", "postgres")
    s = load_settings()
    fake = FakeMlflow()
    fake.status = 503
    app = create_app(
        s,
        store=FakeStore(),
        mlflow=MlflowClient(
            s.mlflow_url, timeout=0.5, retries=0, backoff=0, transport=httpx.MockTransport(fake.handle)
        ),
    )

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as c:
            return await c.get("/health")

    r = asyncio.run(go())
    assert r.status_code == 200 and r.json()["status"] == "warn"


def test_liveness_touches_no_dependency(call, deps):
    deps[0].down = True
    r = call("GET", "/health/live")
    assert r.status_code == 200 and deps[0].pings == 0


def test_correlation_id_echoed_and_logged(call, logs):
    r = call("GET", "/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert any(e.get("request_id") == "abc-123" and e["msg"] == "request" for e in logs())


def test_correlation_id_generated_when_absent(call, logs):
    r = call("GET", "/health/live")
    rid = r.headers["x-request-id"]
    assert len(rid) == 32
    line = [e for e in logs() if e.get("request_id") == rid][0]
    assert {"ts", "level", "method", "path", "status", "duration_ms"} <= set(line)


def test_write_goes_to_both_stores_and_reads_back(call, deps):
    r = call("POST", "/runs", json={"experiment": "exp", "params": {"lr": "0.1"}, "metrics": {"acc": 0.9}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert uuid.UUID(run["id"]) in deps[0].rows and run["mlflow_run_id"] in deps[1].runs
    back = call("GET", f"/runs/{run['id']}").json()
    assert back["params"] == {"lr": "0.1"} and back["metrics"] == {"acc": 0.9}
    assert back["mlflow_status"] == "FINISHED"


def test_write_with_postgres_down_is_503_and_touches_nothing(call, deps):
    deps[0].down = True
    r = call("POST", "/runs", json={"experiment": "exp", "params": {"a": "b"}})
    assert r.status_code == 503 and "postgres" in r.json()["detail"] and r.json()["request_id"]
    assert deps[0].rows == {} and deps[1].runs == {}


KEY = {"Idempotency-Key": "k-1"}
BODY = {"experiment": "exp", "params": {"a": "b"}, "metrics": {"m": 1.5}}


def test_write_with_mlflow_down_is_503_leaves_an_intent_and_the_retry_with_its_key_records_it_once(call, deps):
    store, mlflow = deps
    mlflow.status = 503
    r = call("POST", "/runs", json=BODY, headers=KEY)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert [row.state for row in store.rows.values()] == ["pending"] and mlflow.runs == {}
    mlflow.status = 200
    again = call("POST", "/runs", json=BODY, headers=KEY)
    assert again.status_code == 201, again.text
    assert list(store.rows) == [uuid.UUID(again.json()["id"])] and len(mlflow.runs) == 1
    replay = call("POST", "/runs", json=BODY, headers=KEY)
    assert replay.status_code == 200 and replay.json()["id"] == again.json()["id"] and len(mlflow.runs) == 1


def test_the_same_key_with_another_body_is_409_and_records_nothing(call, deps):
    assert call("POST", "/runs", json=BODY, headers=KEY).status_code == 201
    other = call("POST", "/runs", json={**BODY, "params": {"a": "c"}}, headers=KEY)
    assert other.status_code == 409 and other.json()["error"] == "idempotency key reused"
    assert len(deps[0].rows) == 1 and len(deps[1].runs) == 1


def test_a_key_whose_request_is_still_at_work_is_409_with_retry_after(call, deps):
    deps[1].status = 503
    call("POST", "/runs", json=BODY, headers=KEY)
    deps[0].claimed = set(deps[0].rows)  # as if the first request still held its lease
    deps[1].status = 200
    busy = call("POST", "/runs", json=BODY, headers=KEY)
    assert busy.status_code == 409 and deps[1].runs == {}
    assert 3590 <= int(busy.headers["retry-after"]) <= 3600, "Retry-After says when the lease ends"


def test_a_lost_answer_from_mlflow_create_is_finished_by_the_retry_without_a_second_run(call, deps, settings):
    """MLflow made the run and its answer was lost: the key stays held for the lease (a retry
    meanwhile is 409, Retry-After the lease left); after it, the retry finishes that run."""
    store, mlflow = deps
    mlflow.lose_create_answer = True
    first = call("POST", "/runs", json=BODY, headers=KEY)
    assert first.status_code == 503 and "the run may still be made" in first.json()["detail"]
    assert settings.claim_lease - 2 <= int(first.headers["retry-after"]) <= settings.claim_lease
    (made,) = mlflow.runs.values()
    assert made["info"]["status"] == "RUNNING" and made["data"]["params"] == []
    busy = call("POST", "/runs", json=BODY, headers=KEY)
    assert busy.status_code == 409 and int(busy.headers["retry-after"]) > 1, busy.text
    store.expire()
    again = call("POST", "/runs", json=BODY, headers=KEY)
    assert again.status_code == 201 and len(mlflow.runs) == 1, again.text
    assert made["info"]["status"] == "FINISHED" and made["data"]["params"] == [{"key": "a", "value": "b"}]
    assert again.json()["mlflow_run_id"] == made["info"]["run_id"]


def test_a_lost_answer_from_the_postgres_commit_leaves_a_consistent_run_the_retry_returns(call, deps):
    store, mlflow = deps
    store.lose_complete_answer = True
    first = call("POST", "/runs", json=BODY, headers=KEY)
    assert first.status_code == 503 and "postgres" in first.json()["detail"]
    (row,) = store.rows.values()
    assert row.state == "complete" and row.mlflow_run_id in mlflow.runs and mlflow.deleted == []
    again = call("POST", "/runs", json=BODY, headers=KEY)
    assert again.status_code == 200 and again.json()["id"] == str(row.id) and len(mlflow.runs) == 1


def test_a_read_finishes_a_write_cut_short(call, deps):
    store, mlflow = deps
    mlflow.lose_create_answer = True
    assert call("POST", "/runs", json=BODY).status_code == 503
    (row,) = store.rows.values()
    assert call("GET", f"/runs/{row.id}").status_code == 503, "held while the create may still land"
    store.expire()
    read = call("GET", f"/runs/{row.id}")
    assert read.status_code == 200, read.text
    assert read.json()["params"] == {"a": "b"} and read.json()["mlflow_status"] == "FINISHED"
    assert len(mlflow.runs) == 1 and store.rows[row.id].state == "complete"


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "experiment"),
        ({"experiment": ""}, "experiment"),
        ({"experiment": "e", "metrics": {"m": "not-a-number"}}, "metrics.m"),
        ({"experiment": "e", "params": {"bad key!": "v"}}, "params"),
    ],
)
def test_invalid_input_is_422_with_reason(call, body, field):
    r = call("POST", "/runs", json=body)
    assert r.status_code == 422
    assert any(p["field"].startswith(field) for p in r.json()["problems"]), r.text


def test_non_finite_metric_rejected(call):
    r = call(
        "POST",
        "/runs",
        content=b'{"experiment": "e", "metrics": {"m": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422


def test_oversized_body_is_413(call, deps):
    r = call("POST", "/runs", json={"experiment": "e", "params": {"p": "x" * 70000}})
    assert r.status_code == 413 and deps[0].rows == {}
    assert r.json()["error"] == "request body too large" and r.json()["request_id"] == r.headers["x-request-id"]


def test_unknown_run_is_404(call):
    assert call("GET", f"/runs/{uuid.uuid4()}").status_code == 404


def test_openapi_describes_every_endpoint(call):
    paths = call("GET", "/openapi.json").json()["paths"]
    assert {"/health", "/health/deep", "/health/live", "/runs", "/runs/{run_id}", "/metrics"} <= set(paths)


def test_metrics_count_checks(call):
    call("GET", "/health")
    call("GET", "/health")
    text = call("GET", "/metrics").text
    assert 'api_health_checks_total{component="postgres",status="pass"} 2.0' in text


@pytest.fixture
def blackhole():
    """A TCP listener that accepts and never answers: a frozen Postgres as a client sees it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield srv.getsockname()[1]
    srv.close()


def test_real_postgres_probe_against_a_blackhole_is_bounded(monkeypatch, blackhole, logs):
    monkeypatch.setenv("API_DATABASE_URL", f"postgresql://app:{PASSWORD}@127.0.0.1:{blackhole}/api")
    monkeypatch.setenv("API_MLFLOW_URL", "http://mlflow:5000/mlflow")
    monkeypatch.setenv("API_DB_TIMEOUT", "0.4")
    s = load_settings()
    fake = FakeMlflow()
    app = create_app(
        s,
        store=Store(s.database_url, timeout=0.4, max_connections=1),
        mlflow=MlflowClient(
            s.mlflow_url, timeout=0.5, retries=0, backoff=0, transport=httpx.MockTransport(fake.handle)
        ),
    )

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as c:
            return await c.get("/health")

    started = time.monotonic()
    r = asyncio.run(go())
    assert time.monotonic() - started < 0.4 + 0.5
    assert r.status_code == 503
    assert r.json()["checks"]["postgres:responseTime"][0]["status"] == "fail"


# -- bounded work and fast shedding ------------------------------------------------------------------


def test_bulkhead_admits_its_limit_sheds_the_rest_after_the_queue_wait_and_frees_slots_on_errors():
    from services.api.bulkhead import Bulkhead, Overloaded

    seen: list[tuple[str, int]] = []
    shed: list[str] = []
    head = Bulkhead("mlflow", 2, 0.1, lambda n, k: seen.append((n, k)), shed.append)

    async def main():
        gate = asyncio.Event()

        async def hold():
            async with head.slot():
                await gate.wait()

        holders = [asyncio.ensure_future(hold()) for _ in range(2)]
        await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(Overloaded, match=r"mlflow: 2 requests at work on it, none finished within 0.1s"):
            async with head.slot():
                pass
        waited = time.monotonic() - started
        gate.set()
        await asyncio.gather(*holders)
        with pytest.raises(RuntimeError):
            async with head.slot():
                raise RuntimeError("the work failed")
        async with head.slot():
            pass
        return waited

    waited = asyncio.run(main())
    assert 0.1 <= waited < 0.3
    assert shed == ["mlflow"] and head.in_flight == 0
    assert max(k for _, k in seen) == 2 and seen[-1] == ("mlflow", 0)


def test_writes_beyond_the_mlflow_limit_are_shed_fast_with_503_and_retry_after(monkeypatch, logs):
    """MLflow stuck on two writes: the third and later answer 503 `overloaded` within the queue wait
    (not at the request deadline); the admitted two complete once MLflow answers."""
    monkeypatch.setenv("API_DATABASE_URL", f"postgresql://app:{PASSWORD}@db:5432/api")
    monkeypatch.setenv("API_MLFLOW_URL", "http://mlflow:5000/mlflow")
    monkeypatch.setenv("API_MLFLOW_CONCURRENCY", "2")
    monkeypatch.setenv("API_QUEUE_WAIT", "0.2")
    s = load_settings()
    fake, store = FakeMlflow(), FakeStore()

    async def main():
        gate = asyncio.Event()

        async def handle(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/runs/create"):
                await gate.wait()
            return await fake.handle(request)

        app = create_app(
            s,
            store=store,
            mlflow=MlflowClient(s.mlflow_url, timeout=5, retries=0, backoff=0, transport=httpx.MockTransport(handle)),
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as c:

            async def post(i):
                t0 = time.monotonic()
                r = await c.post("/runs", json={"experiment": "e", "params": {"i": str(i)}})
                return r, time.monotonic() - t0

            writes = [asyncio.ensure_future(post(i)) for i in range(5)]
            await asyncio.sleep(0.5)
            shed = [w.result() for w in writes if w.done()]
            in_flight = (await c.get("/metrics")).text
            gate.set()
            done = await asyncio.gather(*writes)
            metrics = (await c.get("/metrics")).text
            return shed, done, in_flight, metrics

    shed, done, in_flight, metrics = asyncio.run(main())
    assert len(shed) == 3 and all(r.status_code == 503 for r, _ in shed), [r.text for r, _ in shed]
    assert all(r.headers["retry-after"] == "1" and r.json()["error"] == "overloaded" for r, _ in shed)
    assert all(seconds < 0.2 + 0.2 for _, seconds in shed), [s for _, s in shed]
    assert 'api_in_flight{dependency="mlflow"} 2.0' in in_flight
    assert sorted(r.status_code for r, _ in done) == [201, 201, 503, 503, 503]
    assert 'api_shed_total{dependency="mlflow"} 3.0' in metrics
    assert len(store.rows) == 2 and len(fake.runs) == 2, "the shed writes recorded nothing anywhere"
