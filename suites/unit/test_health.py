"""Health logic: aggregation, HTTP mapping, hard deadlines, TTL cache and single flight,
stale-while-revalidate, and the fleet-safe load balancer view against the monitoring view.

In virtual time: every evaluation runs on an event loop whose clock jumps to its next timer
(suites/unit/virtual_time.py), so the budgets, retries, TTLs and backoffs are the real ones, a test takes no wall time
for them, and a loaded machine cannot stretch them. The one exception watches a loop that is
really blocked, on the real clock."""

import asyncio
import resource
import time

import pytest

from services.api.checks import (
    DEADLINE_SLACK,
    Check,
    CheckFailed,
    CheckResult,
    LoopMonitor,
    Status,
    descriptors_problem,
    run_check,
)
from services.api.health import HealthService, aggregate
from suites.unit.virtual_time import run

pytestmark = pytest.mark.unit


def timed(coro) -> tuple:
    """``coro``'s result and how long it took on the loop's (virtual) clock."""

    async def main():
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await coro
        return result, loop.time() - started

    return run(main())


def result(component: str, status: Status) -> CheckResult:
    return CheckResult(component, "responseTime", "datastore", status, 1.0, "t")


@pytest.mark.parametrize(
    "statuses,required,expected",
    [
        ({"postgres": Status.PASS, "mlflow": Status.PASS}, {"postgres": True, "mlflow": True}, Status.PASS),
        ({"postgres": Status.FAIL, "mlflow": Status.PASS}, {"postgres": True, "mlflow": True}, Status.FAIL),
        ({"postgres": Status.PASS, "mlflow": Status.FAIL}, {"postgres": True, "mlflow": False}, Status.WARN),
        ({"postgres": Status.PASS, "mlflow": Status.WARN}, {"postgres": True, "mlflow": True}, Status.WARN),
        ({"postgres": Status.FAIL, "mlflow": Status.WARN}, {"postgres": True, "mlflow": False}, Status.FAIL),
    ],
)
def test_aggregate(statuses, required, expected):
    assert aggregate(tuple(result(c, s) for c, s in statuses.items()), required) is expected


async def ok() -> None:
    return None


async def hang() -> None:
    await asyncio.Event().wait()


async def boom() -> None:
    raise CheckFailed("GET /health answered HTTP 500")


def test_passing_check_reports_latency_and_time():
    r = run(run_check(Check("postgres", "datastore", ok, 1.0)))
    assert r.status is Status.PASS and r.output is None
    body = r.as_json()
    assert set(body) == {"componentType", "observedValue", "observedUnit", "status", "time"}
    assert body["observedUnit"] == "ms" and body["time"].endswith("Z")


def test_hanging_check_is_cut_at_its_budget():
    r, elapsed = timed(run_check(Check("postgres", "datastore", hang, 0.2)))
    assert r.status is Status.FAIL and r.output == "timed out after 0.20s"
    assert elapsed == pytest.approx(0.2 + DEADLINE_SLACK)  # the hard deadline, to the timer


def test_optional_failure_is_warn_with_output():
    r = run(run_check(Check("mlflow", "component", boom, 1.0, required=False)))
    assert r.status is Status.WARN and r.output == "GET /health answered HTTP 500"


def test_output_is_redacted():
    async def leaky() -> None:
        raise RuntimeError("connect to postgresql://app:hunter22@db/api failed")

    r = run(run_check(Check("postgres", "datastore", leaky, 1.0), secrets=("hunter22",)))
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

    reports = run(main())
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

    first, second, third = run(main())
    assert (first.cached, second.cached, third.cached) == (False, True, False)
    assert probe.calls == 2


def test_failures_are_cached_too():
    probe = Counting(delay=0, fail=True)
    service = HealthService((Check("postgres", "datastore", probe, 1.0),), ttl=5.0)

    async def main():
        return [await service.report() for _ in range(10)]

    reports = run(main())
    assert probe.calls == 1 and all(r.status is Status.FAIL for r in reports)
    assert reports[0].http_status == 503


def test_required_failure_does_not_wait_for_slow_checks():
    service = HealthService((Check("postgres", "datastore", boom, 1.0), Check("mlflow", "component", hang, 3.0)), ttl=0)
    report, elapsed = timed(service.report())
    assert elapsed < 0.01  # the required check failed at once: MLflow's 3 s are not waited for
    assert report.status is Status.FAIL
    mlflow = report.as_json()["checks"]["mlflow:responseTime"][0]
    assert mlflow["status"] == "warn" and "not awaited" in report.log_fields()["checks"]["mlflow"]["output"]


class Freezes:
    """A database check: answers until ``freeze()``, then hangs (a frozen Postgres)."""

    def __init__(self) -> None:
        self.calls = 0
        self.frozen = False

    async def __call__(self) -> None:
        self.calls += 1
        if self.frozen:
            await hang()


def test_a_check_that_passed_runs_again_each_ttl_while_a_slow_check_hangs():
    """The database freezes after its check passed, while MLflow's check waits on that same
    database: the verdict names the database within TTL + its budget, not after MLflow's retries."""
    db = Freezes()

    async def mlflow() -> None:  # its query reached the database just after the database's own check
        db.frozen = True
        await hang()

    service = HealthService(
        (Check("postgres", "datastore", db, 0.2), Check("mlflow", "component", mlflow, 3.0)), ttl=0.3
    )
    report, elapsed = timed(service.report(deep=True))
    checks = report.as_json()["checks"]
    assert report.status is Status.FAIL and checks["postgres:responseTime"][0]["status"] == "fail", checks
    assert checks["mlflow:responseTime"][0]["status"] == "warn"
    assert "not awaited" in report.log_fields()["checks"]["mlflow"]["output"]
    assert 0.3 + 0.2 <= elapsed < 0.3 + 0.2 + 0.4, elapsed  # TTL + the database's budget, not MLflow's 3 s
    assert db.calls == 2


def test_while_a_slow_check_passes_the_others_run_once_per_ttl_and_the_slow_one_is_kept():
    db = Counting(delay=0)

    async def slow() -> None:
        await asyncio.sleep(1.0)

    ran: list[str] = []
    service = HealthService(
        (Check("postgres", "datastore", db, 0.2), Check("mlflow", "component", slow, 3.0)),
        ttl=0.3,
        on_check=lambda r: ran.append(r.component),
    )
    report = run(service.report())
    assert report.status is Status.PASS
    assert db.calls == 4, db.calls  # at 0, 0.3, 0.6, 0.9 s; MLflow's answer at 1.0 s ends the evaluation
    assert sorted(ran) == ["mlflow"] + ["postgres"] * 4  # what api_health_checks_total counts


def test_without_a_ttl_nothing_runs_twice():
    db = Counting(delay=0)

    async def slow() -> None:
        await asyncio.sleep(0.3)

    service = HealthService((Check("postgres", "datastore", db, 0.2), Check("mlflow", "component", slow, 3.0)), ttl=0)
    assert run(service.report()).status is Status.PASS
    assert db.calls == 1


def test_closing_cancels_the_checks_of_a_running_evaluation():
    started, cancelled = [], []
    both_started, both_cancelled = asyncio.Event(), asyncio.Event()

    async def hangs() -> None:
        started.append(1)
        if len(started) == 2:
            both_started.set()
        try:
            await hang()
        except asyncio.CancelledError:
            cancelled.append(1)
            if len(cancelled) == 2:
                both_cancelled.set()
            raise

    service = HealthService(
        (Check("postgres", "datastore", hangs, 5.0), Check("mlflow", "component", hangs, 5.0)), ttl=1.0
    )

    async def main() -> None:
        caller = asyncio.ensure_future(service.report())
        await asyncio.wait_for(both_started.wait(), 1)
        await service.aclose()
        await asyncio.wait_for(both_cancelled.wait(), 1)  # not left running until their 5 s budgets
        await asyncio.gather(caller, return_exceptions=True)

    run(main())
    assert len(cancelled) == 2


def test_draining_reports_fail_without_probing():
    probe = Counting(delay=0)
    service = HealthService((Check("postgres", "datastore", probe, 1.0),), ttl=5.0)
    service.draining = True
    report = run(service.report())
    assert report.status is Status.FAIL and report.http_status == 503
    assert report.as_json()["output"].startswith("draining")
    assert probe.calls == 0


def test_health_json_shape():
    service = HealthService(
        (Check("postgres", "datastore", ok, 1.0), Check("mlflow", "component", boom, 1.0, required=False)), ttl=0
    )
    body = run(service.report()).as_json()
    assert body["status"] == "warn"
    assert set(body["checks"]) == {"postgres:responseTime", "mlflow:responseTime"}
    assert body["checks"]["mlflow:responseTime"][0]["status"] == "warn"
    assert "output" not in body["checks"]["mlflow:responseTime"][0], "the check's error text is not answered"
    assert run(service.report()).log_fields()["checks"]["mlflow"]["output"] == "GET /health answered HTTP 500"


# -- fleet safety: the load balancer's view against the monitoring view ----------------------------


class Switch:
    """A dependency that fails while ``down`` is set."""

    def __init__(self, down: bool = False):
        self.down, self.calls = down, 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.down:
            raise CheckFailed("connection refused")


def two(postgres: Switch, mlflow: Switch, *, mlflow_required: bool = True, **kw) -> HealthService:
    return HealthService(
        (
            Check("postgres", "datastore", postgres, 1.0),
            Check("mlflow", "component", mlflow, 1.0, required=mlflow_required),
        ),
        ttl=0,
        **kw,
    )


def reports(service: HealthService, *steps):
    """Run ``steps`` (callables or 'lb'/'deep' views) in one event loop; collect the reports."""

    async def main():
        out = []
        for step in steps:
            if step in ("lb", "deep"):
                out.append(await service.report(deep=step == "deep"))
            else:
                step()
        return out

    return run(main())


def test_a_task_is_out_of_service_until_every_required_dependency_answered_once():
    pg, ml = Switch(), Switch(down=True)
    service = two(pg, ml)
    starting, deep = reports(service, "lb", "deep")
    for r in (starting, deep):
        assert r.status is Status.FAIL and r.http_status == 503 and r.phase.value == "starting"
        assert r.output == "not in service yet: no healthy answer yet from mlflow"
    (serving,) = reports(service, lambda: setattr(ml, "down", False), "lb")
    assert serving.status is Status.PASS and serving.phase.value == "serving"


def test_an_optional_dependency_does_not_keep_a_task_out_of_service():
    service = two(Switch(), Switch(down=True), mlflow_required=False)
    lb, deep = reports(service, "lb", "deep")
    assert lb.status is Status.WARN and deep.status is Status.WARN and lb.phase.value == "serving"


@pytest.mark.parametrize("failing", ["postgres", "mlflow"])
def test_a_shared_outage_after_entering_service_is_warn_for_the_balancer_and_fail_for_monitoring(failing):
    deps = {"postgres": Switch(), "mlflow": Switch()}
    service = two(deps["postgres"], deps["mlflow"])
    before, lb, deep = reports(service, "lb", lambda: setattr(deps[failing], "down", True), "lb", "deep")
    assert before.status is Status.PASS
    assert lb.status is Status.WARN and lb.http_status == 200 and lb.phase.value == "serving"
    assert lb.output.startswith(f"dependency failing: {failing};") and "/health/deep" in lb.output
    assert lb.as_json()["checks"][f"{failing}:responseTime"][0]["status"] == "fail"
    assert deep.status is Status.FAIL and deep.http_status == 503
    assert deep.output == f"dependency failing: {failing}"


def test_task_local_trouble_fails_both_views_at_once_even_with_every_dependency_up():
    problem: list[str | None] = [None]
    service = two(Switch(), Switch(), local_checks=(lambda: problem[0],))
    ok, lb, deep = reports(service, "lb", lambda: problem.__setitem__(0, "event loop stalled: x"), "lb", "deep")
    assert ok.status is Status.PASS
    for r in (lb, deep):
        assert r.status is Status.FAIL and r.http_status == 503 and r.output == "event loop stalled: x"


def test_stale_while_revalidate_serves_the_last_result_at_once_and_refreshes_once():
    now = [100.0]
    slow = Counting(delay=0.3)
    service = HealthService((Check("postgres", "datastore", slow, 1.0),), ttl=2.0, max_stale=10.0, clock=lambda: now[0])

    async def main():
        first = await service.report()  # nothing cached: waits for the evaluation
        now[0] += 5.0  # older than the TTL, within max_stale
        started = asyncio.get_running_loop().time()
        stale = await asyncio.gather(*(service.report() for _ in range(50)))
        waited = asyncio.get_running_loop().time() - started
        await asyncio.sleep(0.4)  # the one refresh completes
        fresh = await service.report()
        return first, stale, waited, fresh

    first, stale, waited, fresh = run(main())
    assert not first.cached and first.age == 0
    assert waited < 0.1, "a stale result must be served without waiting on the refresh"
    assert all(r.cached and r.stale and r.age == 5.0 for r in stale)
    assert stale[0].as_json()["stale"] is True and stale[0].as_json()["ageSeconds"] == 5.0
    assert slow.calls == 2, "fifty stale callers start one refresh"
    assert fresh.cached and not fresh.stale and fresh.age == 0


def test_a_result_older_than_max_stale_is_not_served_the_caller_waits_for_the_refresh():
    now = [100.0]
    probe = Counting(delay=0)
    service = HealthService(
        (Check("postgres", "datastore", probe, 1.0),), ttl=2.0, max_stale=10.0, clock=lambda: now[0]
    )

    async def main():
        await service.report()
        now[0] += 10.5
        return await service.report()

    r = run(main())
    assert not r.cached and not r.stale and r.age == 0 and probe.calls == 2


def test_loop_monitor_reports_a_stall_above_its_limit_for_its_window():
    now = [0.0]
    m = LoopMonitor(2.0, interval=0.2, window=10.0, clock=lambda: now[0])
    assert m.problem() is None, "not running yet: nothing to say"
    m.last_wake = 0.0
    m.record(1.5)
    assert m.problem() is None, "1.5 s is within the 2 s limit"
    now[0] = 3.0
    assert m.problem() == "event loop stalled: 2.8s late now (limit 2s)"
    m.record(2.8)
    assert m.problem() == "event loop stalled: blocked 2.8s, 0s ago (limit 2s)"
    now[0] = 13.5
    m.last_wake = 13.4
    assert m.problem() is None, "a stall older than the window is forgotten"


def test_loop_monitor_sees_a_real_blocked_loop():
    m = LoopMonitor(0.3, interval=0.05)

    async def main():
        task = asyncio.ensure_future(m.run())
        await asyncio.sleep(0.1)
        before = m.problem()
        time.sleep(0.5)  # the event loop blocked, as a CPU-bound handler would
        await asyncio.sleep(0.1)
        after = m.problem()
        task.cancel()
        return before, after

    before, after = asyncio.run(main())
    assert before is None
    assert after is not None and after.startswith("event loop stalled: blocked 0.")


def test_descriptors_problem_near_the_soft_limit(tmp_path):
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    for i in range(20):
        (tmp_path / str(i)).touch()
    assert descriptors_problem(0.9, str(tmp_path)) is None
    assert descriptors_problem(10 / soft, str(tmp_path)) == f"file descriptors exhausted: 20 of {soft} open"
    assert descriptors_problem(0.9) is None, "this test process is far from its limit"


@pytest.mark.parametrize("case", ["pass", "starting", "warn", "stale", "draining"])
def test_the_encoded_body_is_the_json_body(case):
    """body() encodes the part shared by one evaluation once and appends the age: it must say
    exactly what as_json() says, in every state."""
    import json

    pg, ml = Switch(), Switch(down=case == "starting")
    now = [0.0]
    service = two(pg, ml, clock=lambda: now[0])
    service.ttl, service.max_stale = 1.0, 10.0

    async def main():
        report = await service.report()
        if case == "warn":
            pg.down, now[0], service.max_stale = True, 2.0, 1.0  # too old to serve: evaluates again
            report = await service.report()
        if case == "stale":
            now[0] = 2.5
            report = await service.report()
        if case == "draining":
            service.draining = True
            report = await service.report()
        return report

    report = run(main())
    assert json.loads(report.body()) == report.as_json()
    expected = {"pass": "pass", "starting": "fail", "warn": "warn", "stale": "pass", "draining": "fail"}[case]
    assert report.as_json()["status"] == expected, report.as_json()
    if case == "stale":
        assert report.as_json()["stale"] is True and report.as_json()["ageSeconds"] == 2.5
