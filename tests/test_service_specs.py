"""The compose file and the service specs say the same thing: settings, ports, images, order."""

import re

import pytest
import yaml

from harness.errors import ConfigurationError
from harness.paths import project
from harness.stack.api import api_config
from harness.stack.compose import check_compose_file, depends_on_problems
from harness.stack.config import StackConfig
from harness.stack.mlflow import mlflow_config
from harness.stack.stack import ORDER, SPECS
from tests import REPO

pytestmark = pytest.mark.harness


def compose_defaults(value: str) -> str:
    """``${VAR:-default}`` -> ``default``: the values compose uses when nothing is exported."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


COMPOSE = yaml.safe_load(project().compose_file.read_text())["services"]
PASSWORD = compose_defaults("${POSTGRES_PASSWORD:-change-me-locally}")
# how the services reach each other in the compose project: by name, on the spec's port
LINKS = {name: (name, spec.port) for name, spec in SPECS.items()}


# TLS to Postgres: the harness's runtimes make a CA per stack, give Postgres a certificate from it
# and the services the CA (verify-full); the compose file, for a laptop, has no CA to share, so its
# Postgres serves plain connections and its services use libpq's default (docs/security.md)
HARNESS_TLS = {
    "POSTGRES_TLS_CERT",
    "POSTGRES_TLS_KEY",
    "API_DATABASE_SSLMODE",
    "API_DATABASE_SSLROOTCERT",
    "MLFLOW_DATABASE_SSLMODE",
    "MLFLOW_DATABASE_SSLROOTCERT",
}


@pytest.mark.parametrize("name", ORDER)
def test_compose_environment_is_the_specs(name):
    spec = SPECS[name]
    config = StackConfig(password=PASSWORD, api_env=())  # the harness's own api tweaks are not the platform's
    expected = spec.environment(config, {dep: LINKS[dep] for dep in spec.depends_on})
    declared = {k: compose_defaults(v) for k, v in (COMPOSE[name].get("environment") or {}).items()}
    assert set(expected) & HARNESS_TLS, f"{name}: the harness no longer gives it TLS settings"
    assert declared == {k: v for k, v in expected.items() if k not in HARNESS_TLS}


@pytest.mark.parametrize("name", ORDER)
def test_compose_port_image_and_order_are_the_specs(name):
    spec, service = SPECS[name], COMPOSE[name]
    container_ports = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
    assert container_ports == {spec.port}
    assert REPO / service["build"]["dockerfile"] == spec.dockerfile and spec.dockerfile.exists()
    assert sorted(service.get("depends_on") or {}) == sorted(spec.depends_on)


def test_compose_waits_on_each_dependency_as_the_harness_does():
    """The harness starts a service only once each of its dependencies is ready; compose must wait
    the same way (service_healthy), or the stack on Docker starts the api beside a booting MLflow."""
    edges = {name: spec.depends_on for name, spec in SPECS.items()}
    assert sum(len(deps) for deps in edges.values()) == 3, edges  # mlflow -> postgres, api -> postgres, mlflow
    assert depends_on_problems(COMPOSE, edges) == []
    check_compose_file()  # what ComposeStack.up checks before it starts anything


def test_a_dependency_compose_only_starts_fails_naming_the_service_and_field(tmp_path):
    text = project().compose_file.read_text()
    broken = text.replace("mlflow: {condition: service_healthy}", "mlflow: {condition: service_started}")
    assert broken != text, "the compose file no longer writes the api's dependency on mlflow this way"
    path = tmp_path / "docker-compose.yml"
    path.write_text(broken)
    with pytest.raises(ConfigurationError) as err:
        check_compose_file(path)
    assert err.value.seen == (
        f"{path}: services.api.depends_on.mlflow.condition = 'service_started': expected service_healthy "
        "(compose would start api before mlflow passed its health check)"
    )


@pytest.mark.parametrize(
    "name, depends_on, problems",
    [
        (
            "api",
            ["postgres", "mlflow"],
            [
                "services.api.depends_on.postgres.condition = 'service_started': expected service_healthy",
                "services.api.depends_on.mlflow.condition = 'service_started': expected service_healthy",
            ],
        ),
        (
            "api",
            {"postgres": {"condition": "service_healthy"}, "mlflow": {}},
            ["services.api.depends_on.mlflow.condition = 'service_started': expected service_healthy"],
        ),
        ("mlflow", None, ["services.mlflow.depends_on.postgres: missing; expected {condition: service_healthy}"]),
    ],
    ids=["list-form", "no-condition", "edge-missing"],
)
def test_compose_forms_that_mean_started_fail(name, depends_on, problems):
    services = {**COMPOSE, name: {**COMPOSE[name], "depends_on": depends_on}}
    found = depends_on_problems(services, {n: s.depends_on for n, s in SPECS.items()}, source="compose.yml")
    assert [p.split(" (", 1)[0] for p in found] == [f"compose.yml: {p}" for p in problems], found


def test_a_one_shot_dependency_must_complete():
    edges = {"app": ("init",)}
    waits_healthy = {"app": {"depends_on": {"init": {"condition": "service_healthy"}}}}
    (problem,) = depends_on_problems(waits_healthy, edges, one_shot={"init"}, source="compose.yml")
    assert problem.startswith(
        "compose.yml: services.app.depends_on.init.condition = 'service_healthy': "
        "expected service_completed_successfully"
    )
    completes = {"app": {"depends_on": {"init": {"condition": "service_completed_successfully"}}}}
    assert depends_on_problems(completes, edges, one_shot={"init"}) == []


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


@pytest.mark.parametrize("name", ["api", "mlflow"])
def test_each_database_clients_image_carries_the_rds_bundle_where_the_plan_and_the_rule_expect_it(name):
    """The plan's *_SSLROOTCERT, the rule database-clients-verify-tls and the Docker runtime all
    name IMAGE_BUNDLE; the image must hold the vendored bundle there (Docker and the rehearsal
    mount the stack's CA over that path, so no run would notice a missing COPY)."""
    from harness.stack.postgres import IMAGE_BUNDLE

    copies = re.findall(r"(?m)^COPY\s+(\S+)\s+(\S+)\s*$", SPECS[name].dockerfile.read_text())
    assert ("services/common/certs/rds-global-bundle.pem", IMAGE_BUNDLE) in copies, copies
    assert "BEGIN CERTIFICATE" in (REPO / "services/common/certs/rds-global-bundle.pem").read_text()
