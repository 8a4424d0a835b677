"""The planned tasks rehearsed on Docker as ECS would run them (python -m harness rehearse): the
staging plan comes into service within its grace periods, and a task the plan gives no database
fails with the service's own words."""

import json

import pytest

from harness.deploy.rehearsal import Rehearsal
from harness.session import LABEL

pytestmark = [pytest.mark.deployment, pytest.mark.docker, pytest.mark.slow]
API_WITHOUT_DATABASE = {"main.tf": (
    (r'(\{ for k, v in local\.database_env\[each\.key\] : "\$\{local\.prefix\[each\.key\]\}\$\{k\}" => v \},)',
     r'each.key == "api" ? {} : \1'),
    (r"(?m)^  secrets = \{\n", '  secrets = each.key == "api" ? {} : {\n'),
)}


def leftovers(docker_client) -> list[str]:
    containers = docker_client.containers.list(all=True, filters={"label": LABEL})
    return [c.name for c in containers if "-rehearsal-" in c.name]


def test_the_staging_plan_comes_into_service_within_its_grace_periods(docker_client, terraform, tmp_path):
    timelines = Rehearsal("staging", ("mlflow", "api"), tmp_path).run()
    for service, t in timelines.items():
        assert t.ok, t.describe()
        assert t.events["dbinit exited 0"] < t.events[f"{service} started"] < t.events["container HEALTHY"]
        assert t.events["in service"] == max(t.events["container HEALTHY"], t.events["target healthy"])
    measured = json.loads((tmp_path / "timings.json").read_text())["rehearsal"]
    assert set(measured) == {"api", "mlflow"}
    assert leftovers(docker_client) == []


def test_a_task_the_plan_gives_no_database_fails_in_the_services_own_words(docker_client, terraform, edit_terraform,
                                                                           tmp_path):
    timelines = Rehearsal("staging", ("api",), tmp_path, source=edit_terraform(API_WITHOUT_DATABASE)).run()
    api = timelines["api"]
    assert not api.ok
    assert "api exited 2" in api.failure and "API_DATABASE_URL: required but not set" in api.failure, api.describe()
    assert leftovers(docker_client) == []
