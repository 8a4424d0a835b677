"""MLflow calls: explicit timeouts, bounded retries with backoff, garbage answers rejected."""

import asyncio
import time

import httpx
import pytest

from services.api.checks import CheckFailed
from services.api.mlflow_client import MlflowClient, MlflowNotSent, MlflowRejected, MlflowUnavailable

pytestmark = pytest.mark.unit

SEARCH = {"experiments": []}


class Script:
    """A transport answering from a list of (path-prefix -> responses); counts calls."""

    def __init__(self, *answers, cycle=False):
        self.answers = list(answers)
        self.cycle = cycle
        self.calls: list[str] = []

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if self.cycle:
            answer = self.answers[(len(self.calls) - 1) % len(self.answers)]
        else:
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer == "hang":
            await asyncio.Event().wait()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, retries=2, timeout=0.3, backoff=0.01) -> MlflowClient:
        return MlflowClient(
            "http://mlflow:5000/mlflow",
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            transport=httpx.MockTransport(self.handler),
        )


def ok_health():
    return httpx.Response(200, text="OK")


def test_ping_calls_health_then_a_real_tracking_call():
    script = Script(ok_health(), httpx.Response(200, json=SEARCH))
    asyncio.run(script.client().ping())
    assert script.calls == ["/mlflow/health", "/mlflow/api/2.0/mlflow/experiments/search"]


def test_one_transient_failure_is_absorbed_by_the_retry():
    script = Script(
        httpx.Response(503, json={"error_code": "TEMPORARILY_UNAVAILABLE"}),
        ok_health(),
        httpx.Response(200, json=SEARCH),
    )
    asyncio.run(script.client(retries=1).ping())
    assert len(script.calls) == 3


def test_database_gone_behind_a_healthy_health_endpoint_fails():
    script = Script(ok_health(), httpx.Response(503, json={"error_code": "TEMPORARILY_UNAVAILABLE"}), cycle=True)
    with pytest.raises(CheckFailed, match="experiments search answered HTTP 503 TEMPORARILY_UNAVAILABLE"):
        asyncio.run(script.client(retries=2).ping())
    assert len(script.calls) == 6  # 3 attempts x (health + search)


def test_retries_are_bounded_with_doubling_backoff():
    script = Script(httpx.ConnectError("refused"))
    started = time.monotonic()
    with pytest.raises(httpx.ConnectError):
        asyncio.run(script.client(retries=3, backoff=0.05).ping())
    elapsed = time.monotonic() - started
    assert len(script.calls) == 4
    assert 0.05 + 0.1 + 0.2 <= elapsed < 0.35 + 0.3


def test_hanging_mlflow_times_out_per_attempt():
    script = Script("hang")
    started = time.monotonic()
    with pytest.raises(CheckFailed, match="no answer within 0.20s"):
        asyncio.run(script.client(retries=1, timeout=0.2).ping())
    assert time.monotonic() - started < 2 * 0.2 + 0.01 + 0.3


def test_garbage_answer_fails_the_ping():
    script = Script(ok_health(), httpx.Response(200, text="<html>proxy error</html>"))
    with pytest.raises(CheckFailed, match="non-JSON"):
        asyncio.run(script.client(retries=0).ping())


def test_root_404_means_wrong_prefix():
    script = Script(httpx.Response(404, text="Not Found"))
    with pytest.raises(CheckFailed, match="GET /health answered HTTP 404"):
        asyncio.run(script.client(retries=0).ping())


def test_call_raises_unavailable_after_503s_and_rejected_on_4xx():
    script = Script(httpx.Response(503, json={"error_code": "TEMPORARILY_UNAVAILABLE"}))
    with pytest.raises(MlflowUnavailable, match="HTTP 503"):
        asyncio.run(script.client(retries=1).call("GET", "/api/2.0/mlflow/runs/get"))
    assert len(script.calls) == 2
    script = Script(httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}))
    with pytest.raises(MlflowRejected, match="INVALID_PARAMETER_VALUE"):
        asyncio.run(script.client(retries=3).call("GET", "/api/2.0/mlflow/runs/get"))
    assert len(script.calls) == 1


def test_experiment_created_when_absent_and_found_after_a_race():
    script = Script(
        httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST"}),
        httpx.Response(400, json={"error_code": "RESOURCE_ALREADY_EXISTS"}),
        httpx.Response(200, json={"experiment": {"experiment_id": "7"}}),
    )
    assert asyncio.run(script.client().experiment_id("e")) == "7"
    assert [c.rsplit("/", 1)[1] for c in script.calls] == ["get-by-name", "create", "get-by-name"]


SQL_ERROR = (
    "(psycopg2.errors.QueryCanceled) canceling statement due to statement timeout\n"
    "[SQL: INSERT INTO runs (run_uuid, name, source_type, user_id, status) VALUES (%(run_uuid)s, ...)]\n"
    "[parameters: {'run_uuid': 'abc', 'password': 'hunter22'}]"
)


def test_an_mlflow_5xx_is_unavailability_retried_never_a_refusal():
    """A 500 says MLflow failed, not that it refuses the value: the call is retried like a 503 and
    ends as unavailability (the api answers 503 with Retry-After), and MLflow's text is not kept."""
    script = Script(httpx.Response(500, json={"error_code": "INTERNAL_ERROR", "message": SQL_ERROR}))
    with pytest.raises(MlflowUnavailable) as caught:
        asyncio.run(script.client(retries=2).call("GET", "/api/2.0/mlflow/runs/get"))
    assert len(script.calls) == 3, "retried as a transient failure"
    assert "HTTP 500 INTERNAL_ERROR" in str(caught.value)
    assert "SQL" not in str(caught.value) and "hunter22" not in str(caught.value)


@pytest.mark.parametrize(
    "message",
    [SQL_ERROR, "x" * 5000, "Invalid value 'SELECT * FROM users WHERE 1=1' for parameter 'name'"],
    ids=["sql", "long", "sql-in-a-value"],
)
def test_a_refusal_keeps_a_bounded_sql_free_message(message):
    script = Script(httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": message}))
    with pytest.raises(MlflowRejected) as caught:
        asyncio.run(script.client().call("POST", "/api/2.0/mlflow/runs/create"))
    text = str(caught.value)
    assert text.startswith("MLflow answered 400 INVALID_PARAMETER_VALUE")
    assert len(text) <= 300 and "\n" not in text
    assert not any(word in text for word in ("SQL", "SELECT", "INSERT", "hunter22", "psycopg"))


def test_a_plain_refusal_message_is_kept():
    script = Script(
        httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": "Param value too long"})
    )
    with pytest.raises(MlflowRejected, match="Param value too long$"):
        asyncio.run(script.client().call("POST", "/api/2.0/mlflow/runs/create"))


def announced_deadline(timeout: float, request_ends_in: float | None = None) -> tuple[float, float]:
    """When a create was started, and the X-Request-Deadline MLflow was told (``request_ends_in``:
    the request's own deadline, as the runs service sets it)."""
    from services.api.mlflow_client import request_deadline

    seen = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(float(request.headers["X-Request-Deadline"]))
        return httpx.Response(200, json={"run": {"info": {"run_id": "r"}}})

    client = MlflowClient(
        "http://mlflow:5000/mlflow", timeout=timeout, retries=0, backoff=0, transport=httpx.MockTransport(handler)
    )

    async def scenario():
        if request_ends_in is not None:
            request_deadline.set(time.time() + request_ends_in)
        await client.create_run("1", "n", 1)

    started = time.time()
    asyncio.run(scenario())
    return started, seen[0]


def test_every_call_carries_the_deadline_after_which_mlflow_must_not_start_it():
    started, announced = announced_deadline(0.7)
    assert started + 0.7 - 0.001 <= announced <= time.time() + 0.7 + 0.001  # the header keeps milliseconds


def test_a_database_error_mlflow_answers_400_is_unavailability_not_a_refusal():
    """Found by the nemesis on Docker (seed 2, Postgres paused under a create): MLflow's session
    maker answers a database error that is not "operational" 400 BAD_REQUEST with SQLAlchemy's
    text. The api answered 502 "rejected", which tells a client to stop retrying a valid write.
    It is MLflow's database failing: unavailable (a create's outcome unknown), and a refusal of
    a value (INVALID_PARAMETER_VALUE, or BAD_REQUEST of MLflow's own) stays a refusal."""
    db = "(psycopg.errors.InternalError_) cannot execute INSERT\n[SQL: INSERT INTO runs (run_uuid) VALUES (%(x)s)]"
    script = Script(httpx.Response(400, json={"error_code": "BAD_REQUEST", "message": db}))
    with pytest.raises(MlflowUnavailable) as caught:
        asyncio.run(script.client().create_run("1", "n", 1))
    assert not isinstance(caught.value, MlflowNotSent) and "INSERT" not in str(caught.value)
    own = Script(httpx.Response(400, json={"error_code": "BAD_REQUEST", "message": "Malformed JSON body"}))
    with pytest.raises(MlflowRejected):
        asyncio.run(own.client().create_run("1", "n", 1))


def test_every_call_carries_the_commit_deadline_its_settle_time_after_the_attempt_ends():
    """MLflow commits nothing of a call past X-Commit-Deadline (services/mlflow/deadline.py): the
    attempt's end plus the settle time the claim lease covers."""
    seen = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={"run": {"info": {"run_id": "r"}}})

    transport = httpx.MockTransport(handler)
    for settle in (10.0, None):
        client = MlflowClient(
            "http://mlflow:5000/mlflow", timeout=0.7, retries=0, backoff=0, settle_time=settle, transport=transport
        )
        asyncio.run(client.create_run("1", "n", 1))
    fenced, unfenced = seen
    assert float(fenced["X-Commit-Deadline"]) == pytest.approx(float(fenced["X-Request-Deadline"]) + 10.0, abs=0.002)
    assert "X-Commit-Deadline" not in unfenced


def test_mlflow_refuses_a_call_past_its_deadline_before_the_handler_runs():
    from flask import Flask

    from services.mlflow import deadline

    app, ran = Flask("t"), []
    app.add_url_rule("/x", "x", lambda: ran.append(1) or "ok", methods=["POST"])
    deadline.install(app)
    client = app.test_client()
    late = client.post("/x", headers={"X-Request-Deadline": f"{time.time() - 0.01:.3f}"})
    assert late.status_code == 504 and late.json["error_code"] == "DEADLINE_EXCEEDED" and ran == []
    for header in ({"X-Request-Deadline": f"{time.time() + 5:.3f}"}, {}, {"X-Request-Deadline": "soon"}):
        assert client.post("/x", headers=header).status_code == 200
    assert ran == [1, 1, 1]


def test_an_experiments_id_is_asked_once_and_forgotten_when_mlflow_no_longer_knows_it():
    """A write needs its experiment's id: asked of MLflow once per name (an id never changes), so a
    write is three MLflow calls, not four; forgotten on request (the experiment was deleted)."""
    script = Script(httpx.Response(200, json={"experiment": {"experiment_id": "7"}}))
    client = script.client()

    async def scenario():
        first = await client.experiment_id("e")
        again = await client.experiment_id("e")
        client.forget_experiment("e")
        return first, again, await client.experiment_id("e")

    assert asyncio.run(scenario()) == ("7", "7", "7")
    assert [c.rsplit("/", 1)[1] for c in script.calls] == ["get-by-name", "get-by-name"]


def test_no_call_is_announced_as_good_for_longer_than_its_request():
    """The request's deadline caps the header: MLflow may start nothing after the request ends."""
    started, announced = announced_deadline(5.0, request_ends_in=0.2)
    assert announced <= started + 0.2 + 0.1, "capped at the request's deadline, not the attempt's 5 s"


@pytest.mark.parametrize("status", [408, 429])
def test_a_gateway_timeout_or_rate_limit_is_unavailability_not_a_refusal(status):
    script = Script(httpx.Response(status, json={"error_code": "X"}))
    with pytest.raises(MlflowUnavailable):
        asyncio.run(script.client(retries=1).call("GET", "/api/2.0/mlflow/runs/get"))
    assert len(script.calls) == 2
