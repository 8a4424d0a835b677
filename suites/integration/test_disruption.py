"""The api's protections against a frozen database and during shutdown, on the real stack."""

import threading
import time

import httpx
import pytest

from harness.faults.sampler import Sampler
from harness.pictures import Mark, Window
from harness.stack.api import api_config
from harness.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.disruptive]
MARGIN = 0.5  # issue 2: "503 within the DB timeout plus 0.5 s"


def test_frozen_postgres_fails_the_deep_check_fast_keeps_the_task_in_service_and_recovers(restored, budgets):
    """A frozen database is an outage every task shares: /health/deep (monitoring) answers 503 within
    the DB timeout, while /health (the load balancer's check) keeps answering 200 `warn`, naming
    postgres, so the fleet is not drained; both recover when Postgres resumes."""
    stack = restored
    cfg = api_config(stack.environment("api"))
    pg = stack.services["postgres"]
    with Sampler(
        stack.url("api"), ("/health", "/health/deep", "/health/live"), interval=0.05, timeout=cfg.health_budget + 5
    ) as sampler:
        wait_until(lambda: sampler.first("/health/deep", 0, 200), timeout=budgets.http, what="a first 200 sample")
        pg.pause()
        frozen_at = sampler.now()  # once frozen: a busy engine takes a while to pause a container
        try:
            wait_until(
                lambda: sampler.first("/health/deep", frozen_at, 503),
                timeout=budgets.scaled(cfg.health_cache_ttl + cfg.db_timeout + MARGIN) + budgets.detect,
                what="/health/deep to answer 503 with postgres frozen",
            )
            wait_until(
                lambda: [s for s in sampler.series("/health") if s.t >= frozen_at and s.health == "warn"],
                timeout=budgets.http,
                what="/health to answer warn with postgres frozen",
            )
            resumed_at = sampler.now()
        finally:
            pg.resume()
        wait_until(
            lambda: sampler.first("/health/deep", resumed_at + 0.01, 200),
            timeout=budgets.scaled(cfg.health_cache_ttl + 1.0) + 1.0,
            what="/health/deep to answer 200 after postgres resumed",
        )
        recovered_at = sampler.now()
    detected = sampler.first("/health/deep", frozen_at, 503)
    recovered = sampler.first("/health/deep", resumed_at + 0.01, 200)
    detect_budget, recover_budget = cfg.health_cache_ttl + cfg.db_timeout + MARGIN, cfg.health_cache_ttl + 1.0
    sampler.windows.append(Window("fault-window", frozen_at, resumed_at, "postgres frozen"))
    sampler.marks += [
        Mark("detected", detected.t, "/health/deep 503", budget_at=frozen_at + detect_budget),
        Mark("recovered", recovered.t + recovered.latency, "/health/deep 200", budget_at=resumed_at + recover_budget),
    ]
    sampler.max_latency = cfg.db_timeout + MARGIN
    for endpoint in ("/health", "/health/deep"):
        # the answer itself is bounded by the DB timeout, whatever Postgres does
        slowest = sampler.slowest(endpoint, frozen_at, resumed_at)
        assert slowest.latency <= cfg.db_timeout + MARGIN, str(slowest)
    assert detected.t - frozen_at <= detect_budget, str(detected)
    assert recovered.t + recovered.latency - resumed_at <= recover_budget, str(recovered)
    assert recovered_at > resumed_at
    lb = [s for s in sampler.series("/health") if frozen_at <= s.t <= recovered_at]
    assert lb and all(s.status == 200 for s in lb), [str(s) for s in lb if s.status != 200]
    assert any(s.health == "warn" for s in lb)
    live = [s for s in sampler.series("/health/live") if frozen_at <= s.t <= resumed_at]
    assert live and all(s.status == 200 for s in live), [str(s) for s in live if s.status != 200]


def test_sigterm_drains_then_exits_and_in_flight_requests_finish(restored, budgets):
    stack = restored
    cfg = api_config(stack.environment("api"))
    api = stack.services["api"]
    url = stack.url("api")
    results: list[int] = []

    def in_flight():
        # a write takes tens of ms; several overlap the signal
        with httpx.Client(timeout=10) as c:
            for i in range(20):
                try:
                    results.append(
                        c.post(f"{url}/runs", json={"experiment": "drain", "params": {"i": str(i)}}).status_code
                    )
                except httpx.HTTPError:
                    results.append(0)
                    return

    writer = threading.Thread(target=in_flight)
    with Sampler(url, ("/health",), interval=0.05, timeout=5) as sampler:
        writer.start()
        wait_until(lambda: len(results), until=lambda n: n >= 2, timeout=budgets.http, what="writes under way")
        signalled_at = sampler.now()
        api.signal(15)
        wait_until(
            lambda: sampler.first("/health", signalled_at, 503),
            timeout=budgets.http,
            what="/health to report fail while draining",
        )
        code = wait_until(
            api.exit_code,
            until=lambda c: c is not None,
            timeout=cfg.drain_seconds + cfg.shutdown_grace + budgets.detect,
            what="the api to exit after SIGTERM",
        )
        exited_at = sampler.now()
    sampler.windows.append(Window("drain-window", signalled_at, exited_at, "SIGTERM: draining"))
    writer.join(15)
    assert code == 0, api.logs(30)
    assert exited_at - signalled_at <= cfg.drain_seconds + cfg.shutdown_grace + 1.0
    draining = sampler.first("/health", signalled_at, 503)
    assert draining.t - signalled_at <= 0.5, str(draining)
    answered = [s for s in results if s]
    assert answered and all(s == 201 for s in answered), results
    assert '"msg":"draining"' in api.logs(200)


def test_a_stalled_event_loop_fails_the_check_at_once_while_dependencies_are_fine(stack, budgets):
    """Task-local trouble: an api whose event loop was blocked (here frozen with SIGSTOP / docker
    pause, as a CPU-bound handler or a swap storm would) answers 503 naming the stall as soon as it
    answers again, although Postgres and MLflow are healthy; then passes once the stall is old."""
    limit, window = 1.0, 10.0
    config = stack.config.with_api_env(API_LOOP_STALL_LIMIT=str(limit))
    extra = stack.start_extra("api", config, instance="stalled")
    try:
        with httpx.Client(base_url=extra.url, timeout=10) as c:
            wait_until(
                lambda: c.get("/health").status_code,
                until=lambda s: s == 200,
                timeout=budgets.api_ready,
                what="the extra api to enter service",
            )
            extra.pause()
            stalled_at = time.monotonic()
            wait_until(
                time.monotonic,
                until=lambda t: t >= stalled_at + 2 * limit,
                timeout=10,
                interval=0.1,
                what="a stall twice the limit",
            )
            extra.resume()
            first = c.get("/health")
            assert first.status_code == 503, first.text
            body = first.json()
            assert body["output"].startswith("event loop stalled"), body
            assert body["checks"]["postgres:responseTime"][0]["status"] == "pass"
            assert c.get("/health/live").status_code == 200
            back = wait_until(
                lambda: c.get("/health"),
                until=lambda r: r.status_code == 200,
                timeout=window + budgets.http,
                what="/health to pass once the stall is past its window",
            )
            assert back.json()["status"] == "pass"
    finally:
        extra.close(budgets.stop)
