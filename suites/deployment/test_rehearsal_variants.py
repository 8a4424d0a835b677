"""Variants of the staging plan rehearsed on Docker whose tasks never come into service (the full
proof): a task the plan gives no database fails in the service's own words; MLflow checked on /
never comes into service; a start period below the boot. The replacements that go wrong are in
test_rehearsal_replacements.py (two files: each about 6 minutes, so pipeline jobs stay even).

``staging_with`` is shared with that file."""

import re

import pytest

from harness.gantt import rollout_svg
from harness.lifecycle import Step
from harness.paths import environment_file
from harness.rehearsal.rehearsal import Rehearsal
from pytest_harness.docker import leftovers

pytestmark = [pytest.mark.deployment, pytest.mark.docker, pytest.mark.slow, pytest.mark.proof]
API_WITHOUT_DATABASE = {
    "main.tf": (
        (
            r'(\{ for k, v in local\.database_env\[each\.key\] : "\$\{local\.prefix\[each\.key\]\}\$\{k\}" => v \},)',
            r'each.key == "api" ? {} : \1',
        ),
        (r"(?m)^  secrets = \{\n", '  secrets = each.key == "api" ? {} : {\n'),
    )
}


def test_a_task_the_plan_gives_no_database_fails_in_the_services_own_words(
    docker_client, applied_platform, edit_terraform, tmp_path
):
    rehearsal = Rehearsal(
        "staging", ("api",), tmp_path, source=edit_terraform(API_WITHOUT_DATABASE), platform=applied_platform
    )
    api = rehearsal.run().tasks["api"]
    assert not api.ok
    assert "api exited 2" in api.failure and "API_DATABASE_URL: required but not set" in api.failure, api.describe()
    assert rehearsal.session_id and leftovers(docker_client, rehearsal.session_id) == []


def test_mlflow_checked_on_the_root_never_comes_into_service(docker_client, applied_platform, tmp_path, attach_picture):
    """The incident: MLflow's checks on / instead of /mlflow/health. The task starts, MLflow serves,
    and still neither the container check nor the target group ever passes."""
    var_file = tmp_path / "staging.tfvars"
    text = (environment_file("staging")).read_text()
    start = text.index("  mlflow = {")
    block = re.sub(r'health_path\s+= "/mlflow/health"', 'health_path = "/"', text[start:])
    var_file.write_text(text[:start] + block)
    rehearsal = Rehearsal(
        "staging", ("mlflow",), tmp_path, var_file=var_file, replacement=False, platform=applied_platform
    )
    rollout = rehearsal.run()
    attach_picture(
        rollout_svg(rollout, "the incident rehearsed: MLflow checked on /"),
        "deployment/rehearsal-incident",
        "rehearsal: the incident",
    )
    mlflow = rollout.tasks["mlflow"]
    assert not mlflow.ok and Step.TARGET_HEALTHY not in mlflow.steps, mlflow.describe()
    assert "HTTP 404" in mlflow.failure or "UNHEALTHY" in mlflow.failure, mlflow.failure
    assert rehearsal.session_id and leftovers(docker_client, rehearsal.session_id) == []


def test_a_start_period_below_the_boot_fails(docker_client, applied_platform, tmp_path):
    """MLflow that takes longer to boot than start period + retries x interval: the container check
    declares it UNHEALTHY before it answers (ECS would replace it). The boot is stretched by 45 s so
    the verdict does not depend on how fast this machine is; the shipped 90 s start period covers it."""
    var_file = tmp_path / "staging.tfvars"
    text = (environment_file("staging")).read_text()
    start = text.index("  mlflow = {")
    var_file.write_text(text[:start] + re.sub(r"container_start\s+= \d+", "container_start = 0", text[start:], count=1))
    rehearsal = Rehearsal(
        "staging",
        ("mlflow",),
        tmp_path,
        var_file=var_file,
        replacement=False,
        start_delay={"mlflow": 45},
        platform=applied_platform,
    )
    mlflow = rehearsal.run().tasks["mlflow"]
    assert not mlflow.ok and "container UNHEALTHY" in mlflow.failure, mlflow.describe()
    # declared unhealthy while MLflow was still held back: the check, not the app, decided
    declared = float(re.search(r"UNHEALTHY after ([0-9.]+)s", mlflow.failure).group(1))
    assert declared < 45, mlflow.failure
    assert rehearsal.session_id and leftovers(docker_client, rehearsal.session_id) == []


def staging_with(tmp_path, service: str, *edits: tuple[str, str]):
    """staging.tfvars with ``edits`` (regex, replacement) made within ``service``'s block."""
    var_file = tmp_path / "staging.tfvars"
    text = environment_file("staging").read_text()
    start = text.index(f"  {service} = {{")
    end = text.index("\n  }\n", start)
    block = text[start:end]
    for pattern, replacement in edits:
        block, n = re.subn(pattern, replacement, block, count=1)
        assert n == 1, f"{pattern} not in the {service} block"
    var_file.write_text(text[:start] + block + text[end:])
    return var_file
