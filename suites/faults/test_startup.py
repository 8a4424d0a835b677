"""Startup: services started before their database wait for it (bounded, logged) instead of
crashing; and MLflow's 90 s start period is what keeps a slow MLflow alive."""

import json

import pytest

from harness.plan.dockerfile import service_healthcheck
from harness.stack.config import StackConfig
from harness.stack.stack import Stack
from harness.wait import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.disruptive, pytest.mark.slow]
LATE = 8.0  # seconds Postgres stays unreachable after MLflow and the api started


def test_api_and_mlflow_wait_for_a_late_postgres(fresh_runtime, budgets):
    config = StackConfig(proxies=True)
    stack = Stack(fresh_runtime, config, budgets)
    try:
        stack.start(late_postgres=LATE)
        # both kept running through the race (a fatal exit would have stopped the start) ...
        for name in ("mlflow", "api"):
            svc = stack.services[name]
            assert svc.exit_code() is None and getattr(svc, "starts", 1) == 1, f"{name} restarted"
        # ... and said what they were waiting for
        api_waits = [
            json.loads(line) for line in stack.logs("api", 500).splitlines() if '"waiting for dependency"' in line
        ]
        assert api_waits and all(w["dependency"] == "postgres" and w["elapsed_s"] <= w["budget_s"] for w in api_waits)
        assert '"waiting for dependency"' in stack.logs("mlflow", 500)
        # ready soon after Postgres became reachable: within the largest backoff plus a start
        assert stack.ready_s["api_after_postgres"] <= budgets.api_ready
        assert stack.ready_s["mlflow_after_postgres"] <= budgets.mlflow_ready
    finally:
        stack.close()


@pytest.mark.docker
def test_start_period_keeps_a_slow_mlflow_alive(docker_stack, budgets):
    """MLflow that starts late: with the Dockerfile's start period it becomes healthy; with the same
    check and no start period it is declared unhealthy first (Docker would restart it, ECS replace it)."""
    hc = service_healthcheck("mlflow")
    # Longer than the check tolerates: nothing listens while the start is delayed, so each check
    # is refused at once and the third failure comes at about retries x interval. No longer than
    # that, so that MLflow's own boot (10 s on a quiet machine, 27 s measured on three busy xdist
    # workers) still fits the start period after it: a delay of retries x (interval + timeout) +
    # interval (55 s) left 25 s for it, and a loaded machine went over.
    delay = (hc.retries + 1) * hc.interval
    assert delay < hc.start_period, "the scenario needs a delay inside the start period"
    slow = docker_stack.config.with_(start_delay=(("mlflow", delay),))
    with_period = docker_stack.start_extra("mlflow", slow, instance="slow-with-period")
    without = docker_stack.start_extra(
        "mlflow", slow, instance="slow-no-period", healthcheck=hc.as_docker_api(start_period=0.001)
    )
    try:
        status = wait_until(
            without.health,
            until=lambda h: h == "unhealthy",
            timeout=delay + budgets.detect,
            interval=0.5,
            what="MLflow without a start period to be declared unhealthy while still starting",
        )
        assert status == "unhealthy"
        assert with_period.health() == "starting"
        wait_until(
            with_period.health,
            until=lambda h: h == "healthy",
            timeout=delay + budgets.mlflow_ready,
            interval=0.5,
            what="the slow MLflow with the Dockerfile's start period to become healthy",
        )
        assert with_period.healthy_after <= hc.start_period
    finally:
        with_period.close(5)
        without.close(5)
