"""A stack reached only through its URLs, as a pipeline verifies one after deploying it:

    pytest --target-url https://api.staging.example.com            # read-only
    pytest --target-url URL --mlflow-url URL --allow-writes        # also one write round trip

Without --target-url the same checks run against the session's own stack, through its URLs."""

import uuid

import httpx
import pytest

from harness import healthjson
from harness.faults.sampler import Sampler
from harness.load.matcher import matches
from harness.wait import wait_until

pytestmark = pytest.mark.remote
POLLS = 5  # ALB-like checks in a row


def test_health_answers_in_the_health_json_format(target):
    r = httpx.get(f"{target.api}/health", timeout=10)
    assert r.status_code == 200, r.text
    body = healthjson.body(r)
    assert body is not None, f"content-type {r.headers.get('content-type')!r}, expected {healthjson.MEDIA_TYPE}"
    assert body["status"] in ("pass", "warn")
    assert set(body["checks"]) == {"postgres:responseTime", "mlflow:responseTime"}, body
    for name, results in body["checks"].items():
        assert {"status", "componentType", "observedValue", "observedUnit", "time"} <= set(results[0]), name
    live = httpx.get(f"{target.api}/health/live", timeout=10)
    assert live.status_code == 200 and live.json()["status"] == "pass", live.text


def test_mlflow_answers_under_its_prefix(target):
    r = httpx.get(f"{target.mlflow}/health", timeout=10)
    assert (r.status_code, r.text.strip()) == (200, "OK"), f"{target.mlflow}/health -> {r.status_code} {r.text[:200]}"
    search = httpx.get(f"{target.mlflow}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=10)
    assert search.status_code == 200 and "experiments" in search.json(), search.text[:300]


def test_the_correlation_id_comes_back(target):
    rid = f"remote-{uuid.uuid4().hex[:12]}"
    for path in ("/health", "/health/live", "/runs/00000000-0000-0000-0000-000000000000"):
        r = httpx.get(f"{target.api}{path}", headers={"X-Request-ID": rid}, timeout=10)
        assert r.headers.get("x-request-id") == rid, (path, dict(r.headers))


def test_health_passes_the_load_balancers_checks(target, lb_check):
    """Fresh connections with the target group's timeout, judged by its matcher, several in a row."""
    timeout, matcher, source = lb_check
    with Sampler(target.api, ("/health",), interval=0.5, timeout=timeout, max_duration=60) as sampler:
        wait_until(
            lambda: len(sampler.series("/health")),
            until=lambda n: n >= POLLS,
            timeout=timeout * POLLS + 10,
            what=f"{POLLS} load-balancer-like checks of /health",
        )
    bad = [
        str(s)
        for s in sampler.series("/health")
        if s.status is None or not matches(s.status, matcher) or s.latency >= timeout
    ]
    assert not bad, f"checks that the target group ({matcher}, {timeout:g} s, from {source}) would fail: {bad}"


def test_bad_input_gets_a_clear_error(target):
    r = httpx.post(f"{target.api}/runs", json={"experiment": "", "params": {"bad key!": "x"}}, timeout=10)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body.get("error") and body.get("detail"), body
    missing = httpx.get(f"{target.api}/runs/{uuid.uuid4()}", timeout=10)
    assert missing.status_code == 404 and missing.json().get("detail"), missing.text


def test_a_run_written_reads_back(target):
    if not target.writes:
        pytest.skip("read-only: the target is not the harness's own stack and --allow-writes was not given")
    run = {
        "experiment": "remote-verification",
        "name": f"r{uuid.uuid4().hex[:8]}",
        "params": {"lr": "0.1"},
        "metrics": {"acc": 0.5},
    }
    created = httpx.post(f"{target.api}/runs", json=run, timeout=30)
    assert created.status_code == 201, created.text
    back = httpx.get(f"{target.api}/runs/{created.json()['id']}", timeout=30)
    assert back.status_code == 200 and back.json()["params"] == run["params"], back.text
