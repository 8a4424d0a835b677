"""The platform's Dockerfiles: each service's HEALTHCHECK is the one its load balancer and ECS
need (MLflow under its prefix with a start period that covers its boot; the api on the ALB's path)."""

import pytest

from harness.plan.dockerfile import service_healthcheck

pytestmark = pytest.mark.unit


def test_mlflow_check_is_the_prefixed_path_with_90s_start_period():
    hc = service_healthcheck("mlflow")
    assert hc.path == "/mlflow/health" and hc.start_period == 90 and hc.uses_curl
    assert hc.timeout < hc.interval


def test_api_check_matches_the_alb_path():
    assert service_healthcheck("api").path == "/health"
