"""When a fault lands decides how long /health takes to show it. The scenario files inject at a
random moment of the api's evaluation cycle; this test picks the worst one on purpose: Postgres
freezes after the api's database check passed, while the MLflow check of the same evaluation is
about to query MLflow, whose answer needs that same database. MLflow's check then waits out its
attempts and retries (``mlflow_budget``, 3.3 s here); /health must still name the frozen
database within the TTL plus the database check's budget, as every Postgres scenario promises."""

import time

import httpx
import pytest

from harness.faults.sampler import Sampler
from harness.pictures import Mark, Window
from harness.stack.api import api_config
from harness.stack.toxics import Hold
from harness.wait import wait_until
from pytest_harness.faults import budget_names

pytestmark = [pytest.mark.faults, pytest.mark.disruptive]
SEARCH = b"/api/2.0/mlflow/experiments/search"  # the part of MLflow's check that reaches its database


def test_postgres_frozen_while_mlflow_checks_is_named_within_ttl_and_the_db_budget(
    fault_stack, budgets, record_property
):
    stack = fault_stack
    cfg = api_config(stack.environment("api"))
    names = budget_names(stack, budgets)
    budget = names["ttl"] + names["db_timeout"] + names["slack"]  # postgres-frozen.yaml's detect_within
    api_to_mlflow, api_to_postgres = stack.proxies["api->mlflow"], stack.proxies["api->postgres"]
    postgres = stack.services["postgres"]
    with Sampler(stack.url("api"), ("/health",), interval=0.05, timeout=cfg.health_budget + 5) as sampler:
        wait_until(
            lambda: sampler.series("/health")[-1:],
            until=lambda last: bool(last) and last[0].health == "pass",
            timeout=60,
            what="/health to answer pass",
        )
        # the api keeps its store's connections idle between writes (earlier tests wrote on this
        # stack): only a connection opened from here on can be the evaluation's database check
        since = time.monotonic() - 0.5  # an evaluation's check starts a moment before its search
        with api_to_mlflow.toxic(Hold(match=SEARCH)) as held:
            wait_until(
                lambda: held.applied,
                until=lambda n: n == 1,
                timeout=budgets.scaled(cfg.health_cache_ttl + cfg.health_budget) + budgets.http,
                what="the next evaluation's MLflow search (held in the api->mlflow proxy)",
            )
            wait_until(
                lambda: api_to_postgres.live_since(since),
                until=lambda n: n == 0,
                interval=0.01,
                timeout=budgets.scaled(cfg.db_timeout) + budgets.http,
                what="the same evaluation's database check to finish (no fresh api->postgres connection open)",
            )
            postgres.pause()
            frozen_at = sampler.now()
        try:  # the search goes on to MLflow, whose query waits on the frozen database
            detected = wait_until(
                lambda: next((s for s in sampler.series("/health") if s.t >= frozen_at and s.health == "warn"), None),
                until=lambda s: s is not None,
                timeout=budgets.scaled(cfg.health_cache_ttl + cfg.health_budget) + budgets.detect,
                what="/health to answer warn with postgres frozen",
            )
            body = httpx.get(f"{stack.url('api')}/health", timeout=budgets.http).json()
            resumed_at = sampler.now()
        finally:
            postgres.resume()
        sampler.windows.append(Window("fault-window", frozen_at, resumed_at, "postgres frozen mid-check"))
        sampler.marks.append(Mark("detected", detected.t, "/health warn", budget_at=frozen_at + budget))
        wait_until(
            lambda: sampler.series("/health")[-1],
            until=lambda last: last.t > resumed_at and last.health == "pass",
            timeout=budgets.scaled(cfg.health_cache_ttl + cfg.health_budget) + budgets.detect,
            what="/health to answer pass after postgres resumed",
        )
    record_property("detected_s", round(detected.t - frozen_at, 2))
    record_property("detect_budget_s", round(budget, 2))
    during = [s for s in sampler.series("/health") if s.t >= frozen_at]
    assert all(s.status == 200 for s in during), [str(s) for s in during if s.status != 200]  # fleet-safe
    assert detected.t - frozen_at <= budget, f"detect {detected.t - frozen_at:.2f} (budget {budget:.2f}): {detected}"
    checks = body["checks"]
    assert checks["postgres:responseTime"][0]["status"] == "fail", checks  # the database named, not MLflow
