"""A new task with a broken dependency configuration never enters service, on the real stack.

The load balancer's check (/health) fails until every required dependency has answered once, so a
deployment of a misconfigured task fails its checks and the circuit breaker rolls it back; a task
that cannot even reach its database exits at startup (ECS counts it as a task that never started).
The running stack's own api is not touched: each case starts one more api beside it."""

import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from harness.wait import wait_until

pytestmark = [pytest.mark.integration]
OBSERVE = 4.0  # seconds a misconfigured api is watched: several TTLs and full MLflow check budgets


def _with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_an_api_with_a_wrong_mlflow_host_serves_but_never_passes_its_check(stack, budgets):
    config = stack.config.with_api_env(
        API_MLFLOW_URL="http://mlflow-wrong.invalid:5000/mlflow", API_HEALTH_CACHE_TTL="0.5", API_HEALTH_MAX_STALE="0.5"
    )
    extra = stack.start_extra("api", config, instance="wrong-mlflow")
    try:
        live = wait_until(
            lambda: httpx.get(f"{extra.url}/health/live", timeout=2).status_code,
            until=lambda s: s == 200,
            timeout=budgets.api_ready,
            what="the misconfigured api to serve /health/live",
        )
        assert live == 200
        seen: list[httpx.Response] = []
        deadline = time.monotonic() + OBSERVE
        with httpx.Client(base_url=extra.url, timeout=10) as c:
            while time.monotonic() < deadline:
                seen.append(c.get("/health"))
        assert seen and all(r.status_code == 503 for r in seen), [r.status_code for r in seen]
        body = seen[-1].json()
        assert body["phase"] == "starting" and body["output"].endswith("from mlflow"), body
        assert body["checks"]["postgres:responseTime"][0]["status"] == "pass", "postgres itself was fine"
        assert extra.exit_code() is None
    finally:
        extra.close(budgets.stop)


def test_an_api_with_a_wrong_database_password_exits_without_ever_serving(stack, budgets):
    dsn = stack.environment("api")["API_DATABASE_URL"]
    config = stack.config.with_api_env(
        API_DATABASE_URL=_with_password(dsn, "not-the-password"), API_STARTUP_TIMEOUT="3"
    )
    extra = stack.start_extra("api", config, instance="wrong-password")
    try:
        code = wait_until(
            extra.exit_code,
            until=lambda c: c is not None,
            timeout=3 + budgets.api_ready,
            what="the api with a wrong database password to give up",
        )
        assert code == 1, extra.logs(30)
        logs = extra.logs(200)
        assert '"msg":"giving up"' in logs and "password authentication failed" in logs
        assert "not-the-password" not in logs, "the password leaked into the log"
    finally:
        extra.close(budgets.stop)
