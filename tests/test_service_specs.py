"""The compose file and the service specs say the same thing: settings, ports, images, order."""

import re

import pytest
import yaml

from harness.errors import ConfigurationError
from harness.paths import COMPOSE_FILE, REPO
from harness.stack.api import api_config
from harness.stack.config import StackConfig
from harness.stack.mlflow import mlflow_config
from harness.stack.stack import ORDER, SPECS

pytestmark = pytest.mark.harness


def compose_defaults(value: str) -> str:
    """``${VAR:-default}`` -> ``default``: the values compose uses when nothing is exported."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
PASSWORD = compose_defaults("${POSTGRES_PASSWORD:-change-me-locally}")
# how the services reach each other in the compose project: by name, on the spec's port
LINKS = {name: (name, spec.port) for name, spec in SPECS.items()}


@pytest.mark.parametrize("name", ORDER)
def test_compose_environment_is_the_specs(name):
    spec = SPECS[name]
    config = StackConfig(password=PASSWORD, api_env=())  # the harness's own api tweaks are not the platform's
    expected = spec.environment(config, {dep: LINKS[dep] for dep in spec.depends_on})
    declared = {k: compose_defaults(v) for k, v in (COMPOSE[name].get("environment") or {}).items()}
    assert declared == expected


@pytest.mark.parametrize("name", ORDER)
def test_compose_port_image_and_order_are_the_specs(name):
    spec, service = SPECS[name], COMPOSE[name]
    container_ports = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
    assert container_ports == {spec.port}
    assert REPO / service["build"]["dockerfile"] == spec.dockerfile and spec.dockerfile.exists()
    assert sorted(service.get("depends_on") or {}) == sorted(spec.depends_on)


def test_start_order_respects_dependencies():
    assert set(COMPOSE) == set(ORDER)
    for i, name in enumerate(ORDER):
        assert set(SPECS[name].depends_on) <= set(ORDER[:i]), name


API_ENV = {"API_DATABASE_URL": "postgresql://api:pw@db/api", "API_MLFLOW_URL": "http://mlflow:5000/mlflow"}
MLFLOW_ENV = {"MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:pw@db/mlflow"}


def test_the_api_is_asked_for_its_settings():
    cfg = api_config(
        {
            **API_ENV,
            "API_MLFLOW_TIMEOUT": "2",
            "API_MLFLOW_RETRIES": "1",
            "API_MLFLOW_BACKOFF": "0.5",
            "NOT_THE_APIS": "x",
        }
    )
    assert (cfg.mlflow_timeout, cfg.mlflow_budget, cfg.health_budget) == (2.0, 4.5, 4.5)
    assert cfg.db_timeout == 1.0 and cfg.request_timeout == 10.0  # the api's own defaults


def test_a_refused_configuration_carries_the_services_own_message():
    with pytest.raises(ConfigurationError) as err:
        api_config({**API_ENV, "API_DB_TIMEOUT": "-1"}, "staging.tfvars: api environment")
    assert "staging.tfvars: api environment" in str(err.value)
    assert "API_DB_TIMEOUT: Input should be greater than 0" in str(err.value)
    with pytest.raises(ConfigurationError, match="API_DATABASE_URL: required but not set"):
        api_config({"API_MLFLOW_URL": API_ENV["API_MLFLOW_URL"]})  # nothing stands in for a missing variable


def test_mlflow_is_asked_for_its_settings():
    cfg = mlflow_config({**MLFLOW_ENV, "MLFLOW_WORKERS": "4", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert cfg["workers"] == 4 and cfg["job_execution"] is True and cfg["static_prefix"] == "/mlflow"
    with pytest.raises(ConfigurationError, match="MLFLOW_WORKERS: expected a value between 1 and 16"):
        mlflow_config({**MLFLOW_ENV, "MLFLOW_WORKERS": "0"})
