"""Health logic: aggregation, HTTP mapping, hard deadlines, TTL cache and single flight."""

import asyncio
import time

import pytest

from services.api.health import Check, CheckFailed, CheckResult, HealthService, Status, aggregate, run_check

pytestmark = pytest.mark.unit


def result(component: str, status: Status) -> CheckResult:
    return CheckResult(component, "responseTime", "datastore", status, 1.0, "t")


@pytest.mark.parametrize("statuses,required,expected", [
    ({"postgres": Status.PASS, "mlflow": Status.PASS}, {"postgres": True, "mlflow": True}, Status.PASS),
    ({"postgres": Status.FAIL, "mlflow": Status.PASS}, {"postgres": True, "mlflow": True}, Status.FAIL),
    ({"postgres": Status.PASS, "mlflow": Status.FAIL}, {"postgres": True, "mlflow": False}, Status.WARN),
    ({"postgres": Status.PASS, "mlflow": Status.WARN}, {"postgres": True, "mlflow": True}, Status.WARN),
    ({"postgres": Status.FAIL, "mlflow": Status.WARN}, {"postgres": True, "mlflow": False}, Status.FAIL),
])
def test_aggregate(statuses, required, expected):
    assert aggregate(tuple(result(c, s) for c, s in statuses.items()), required) is expected


async def ok() -> None:
    return None


async def hang() -> None:
    await asyncio.Event().wait()


async def boom() -> None:
    raise CheckFailed("GET /health answered HTTP 500")


def test_passing_check_reports_latency_and_time():
    r = asyncio.run(run_check(Check("postgres", "datastore", ok, 1.0)))
    assert r.status is Status.PASS and r.output is None
    body = r.as_json()
    assert set(body) == {"componentType", "observedValue", "observedUnit", "status", "time"}
    assert body["observedUnit"] == "ms" and body["time"].endswith("Z")


def test_hanging_check_is_cut_at_its_budget():
    started = time.monotonic()
    r = asyncio.run(run_check(Check("postgres", "datastore", hang, 0.2)))
    elapsed = time.monotonic() - started
    assert r.status is Status.FAIL and r.output == "timed out after 0.20s"
    assert 0.2 <= elapsed < 0.2 + 0.3


def test_optional_failure_is_warn_with_output():
    r = asyncio.run(run_check(Check("mlflow", "component", boom, 1.0, required=False)))
    assert r.status is Status.WARN and r.output == "GET /health answered HTTP 500"


def test_output_is_redacted():
    async def leaky() -> None:
        raise RuntimeError("connect to postgresql://app:hunter22@db/api failed")

    r = asyncio.run(run_check(Check("postgres", "datastore", leaky, 1.0), secrets=("hunter22",)))
    assert "hunter22" not in r.output and "app:***@db" in r.output


class Counting:
    def __init__(self, delay: float = 0.05, fail: bool = False):
        self.calls = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise CheckFailed("down")


def test_single_flight_200_concurrent_callers_one_check():
    probe = Counting()
    service = HealthService((Check("postgres", "datastore", probe, 1.0),), ttl=5.0)

    async def main():
        return await asyncio.gather(*(service.report() for _ in range(200)))

    reports = asyncio.run(main())
    assert probe.calls == 1
    assert {r.status for r in reports} == {Status.PASS}


def test_cache_expires_after_ttl():
    probe = Counting(delay=0)
    now = [100.0]
    service = HealthService((Check("postgres", "datastore", probe, 1.0),), ttl=2.0, clock=lambda: now[0])

    async def main():
        first = await service.report()
        now[0] += 1.9
        second = await service.report()
        now[0] += 0.2
        third = await service.report()
        return first, second, third

    first, second, third = asyncio.run(main())
    assert (first.cached, second.cached, third.cached) == (False, True, False)
    assert probe.calls == 2


def test_failures_are_cached_too():
    probe = Counting(delay=0, fail=True)
    service = HealthService((Check("postgres", "datastore", probe, 1.0),), ttl=5.0)

    async def main():
        return [await service.report() for _ in range(10)]

    reports = asyncio.run(main())
    assert probe.calls == 1 and all(r.status is Status.FAIL for r in reports)
    assert reports[0].http_status == 503


def test_required_failure_does_not_wait_for_slow_checks():
    service = HealthService((Check("postgres", "datastore", boom, 1.0),
                             Check("mlflow", "component", hang, 3.0)), ttl=0)
    started = time.monotonic()
    report = asyncio.run(service.report())
    assert time.monotonic() - started < 0.5
    assert report.status is Status.FAIL
    mlflow = report.as_json()["checks"]["mlflow:responseTime"][0]
    assert mlflow["status"] == "warn" and "not awaited" in mlflow["output"]


def test_draining_reports_fail_without_probing():
    probe = Counting(delay=0)
    service = HealthService((Check("postgres", "datastore", probe, 1.0),), ttl=5.0)
    service.draining = True
    report = asyncio.run(service.report())
    assert report.status is Status.FAIL and report.http_status == 503
    assert report.as_json()["output"].startswith("draining")
    assert probe.calls == 0


def test_health_json_shape():
    service = HealthService((Check("postgres", "datastore", ok, 1.0),
                             Check("mlflow", "component", boom, 1.0, required=False)), ttl=0)
    body = asyncio.run(service.report()).as_json()
    assert body["status"] == "warn"
    assert set(body["checks"]) == {"postgres:responseTime", "mlflow:responseTime"}
    assert body["checks"]["mlflow:responseTime"][0]["output"] == "GET /health answered HTTP 500"
