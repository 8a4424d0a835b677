"""The compose file and the service specs say the same thing: settings, ports, images, order."""

import re

import pytest
import yaml

from harness.paths import COMPOSE_FILE, REPO
from harness.stack.config import StackConfig
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
