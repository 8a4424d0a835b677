"""The plan's CloudWatch metric filters against the log lines the stack really writes: each
failure kind's lines are counted by its filter, healthy lines by none. The lines are the
services' own JSON request lines, caused by checks this test sends as the load balancer and the
container check would, each with an X-Request-ID that finds its line; the filters are the
patterns in ``terraform show -json`` of the plan (staging, and the incident's MLflow checked on /),
evaluated by ``harness.plan.filters`` (tests/test_filters.py: AWS's documented examples).

Failure kinds: Postgres frozen and MLflow down (the api's /health answers 200 warn: the
dependency filter), a new api task whose required MLflow never answered (503 starting: the health
filter), MLflow checked on the wrong path (404 on /: the MLflow filter of a plan whose checks
use /)."""

import json
import uuid
from collections.abc import Callable

import httpx
import pytest

from harness.faults.kinds import fault
from harness.plan.filters import matches
from harness.plan.observability import metric_filters
from harness.wait import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.disruptive, pytest.mark.terraform]
CHECKS = 3  # failing checks per kind: the alarms fire at 3 in a period


def check(url: str, path: str, tag: str) -> str:
    """One check as a health checker sends it; returns its request id."""
    rid = f"{tag}-{uuid.uuid4().hex[:12]}"
    httpx.get(f"{url}{path}", headers={"X-Request-ID": rid}, timeout=10)
    return rid


def lines(read_log: Callable[[], str], ids: list[str]) -> list[str]:
    """The request lines of ``ids`` (one each, JSON), once all are written: a service writes a
    request's line after its answer has gone out."""

    def found() -> list[str]:
        mine = [line for line in read_log().splitlines() if line.startswith("{") and any(i in line for i in ids)]
        return [line for line in mine if json.loads(line).get("msg") == "request"]

    return wait_until(found, until=lambda f: len(f) == len(ids), timeout=10, what=f"request lines of {ids}")


def counted(filters, service: str, events: list[str]) -> dict[str, int]:
    """How many of ``events`` each of ``service``'s filters counts, by metric name."""
    return {f.metric: sum(matches(f.pattern, e) for e in events) for f in filters if f.service == service}


def until_health(api: str, status: int, health: str, timeout: float = 30) -> None:
    def probe() -> tuple[int, str]:
        r = httpx.get(f"{api}/health", timeout=10)
        return r.status_code, r.json().get("status", "")

    wait_until(
        probe, until=lambda s: s == (status, health), timeout=timeout, what=f"/health to answer {status} {health}"
    )


@pytest.fixture(scope="module")
def filters(make_plan):
    return metric_filters(make_plan("staging"))


@pytest.fixture(autouse=True)
def settled(fault_stack):
    """Each test starts with MLflow answering on its own URL and the api reporting pass (an earlier
    test may have just restarted MLflow)."""
    fault_stack.wait_ready("mlflow")
    until_health(fault_stack.url("api"), 200, "pass", timeout=60)


def test_healthy_checks_are_counted_by_no_filter(fault_stack, filters):
    api, mlflow = fault_stack.url("api"), fault_stack.url("mlflow")
    api_ids = [check(api, "/health", "healthy") for _ in range(CHECKS)] + [check(api, "/health/live", "healthy")]
    mlflow_ids = [check(mlflow, "/health", "healthy") for _ in range(CHECKS)]
    api_lines, mlflow_lines = (
        lines(lambda: fault_stack.logs("api", 2000), api_ids),
        lines(lambda: fault_stack.logs("mlflow", 2000), mlflow_ids),
    )
    assert counted(filters, "api", api_lines) == {"ApiHealthCheckFailures": 0, "ApiDependencyFailures": 0}
    assert counted(filters, "mlflow", mlflow_lines) == {"MlflowHealthCheckFailures": 0}
    assert {json.loads(line)["path"] for line in mlflow_lines} == {"/mlflow/health"}  # what the filter looks for


@pytest.mark.parametrize("kind,target", [("pause", "postgres"), ("kill", "mlflow")])
def test_a_dependency_outage_is_counted_by_the_dependency_filter_and_not_as_a_failed_check(
    fault_stack, filters, kind, target
):
    api = fault_stack.url("api")
    with fault(fault_stack, kind, target):
        until_health(api, 200, "warn")  # in service: a shared outage warns, the load balancer keeps the task
        ids = [check(api, "/health", f"{target}-down") for _ in range(CHECKS)]
    events = lines(lambda: fault_stack.logs("api", 2000), ids)
    assert counted(filters, "api", events) == {"ApiHealthCheckFailures": 0, "ApiDependencyFailures": CHECKS}


def test_a_task_whose_mlflow_never_answered_is_counted_by_the_health_filter(fault_stack, filters):
    with fault(fault_stack, "kill", "mlflow"):
        extra = fault_stack.start_extra("api", instance="filters")
        try:
            url = extra.url

            def live() -> int:
                extra.ensure_running()
                try:
                    return httpx.get(f"{url}/health/live", timeout=5).status_code
                except httpx.TransportError:
                    return 0  # not listening yet

            wait_until(live, until=lambda s: s == 200, timeout=30, what="the new api task to serve /health/live")
            ids = [check(url, "/health", "starting") for _ in range(CHECKS)]
            events = lines(lambda: extra.logs(2000), ids)
        finally:
            extra.close(10)
    assert {json.loads(e)["status"] for e in events} == {503}
    assert counted(filters, "api", events) == {"ApiHealthCheckFailures": CHECKS, "ApiDependencyFailures": 0}


def test_mlflow_checked_on_the_wrong_path_is_counted_by_that_plans_filter(fault_stack, filters, make_plan):
    """The incident: both checks on / instead of /mlflow/health. MLflow answers 404 there; the
    filter of that plan counts every one, the staging plan's filter (its checks on the right path)
    none, so the alarm follows whichever path the checks really use."""
    root = fault_stack.url("mlflow").removesuffix("/mlflow")
    ids = [check(root, "/", "wrong-path") for _ in range(CHECKS)]
    events = lines(lambda: fault_stack.logs("mlflow", 2000), ids)
    assert {json.loads(e)["status"] for e in events} == {404}
    incident = metric_filters(
        make_plan("staging", "mlflow", ((r'health_path\s+= "/mlflow/health"', 'health_path = "/"'),))
    )
    assert counted(incident, "mlflow", events) == {"MlflowHealthCheckFailures": CHECKS}
    assert counted(filters, "mlflow", events) == {"MlflowHealthCheckFailures": 0}
