"""Variants of the staging plan rehearsed on Docker, each with one thing broken (the full proof):
a task the plan gives no database fails in the service's own words; MLflow checked on / never
comes into service; a start period below the boot, a revision that never serves (the circuit
breaker), a stop timeout below the drain."""

import re

import pytest

from fixtures.docker import leftovers
from harness.faults.rollout import deployment_verdicts
from harness.gantt import rollout_svg
from harness.lifecycle import Step
from harness.paths import environment_file
from harness.plan.rules import check
from harness.rehearsal.rehearsal import Rehearsal
from suites.deployment.test_rehearsal import role

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


@pytest.mark.timeout(600)
def test_a_new_revision_that_never_serves_trips_the_circuit_breaker_and_the_old_tasks_keep_serving(
    docker_client, applied_platform, tmp_path, attach_picture
):
    """A revision whose MLflow address is wrong: its api never answers /health 200 (it has never
    reached MLflow), so each new task is replaced; at the breaker's threshold (3 for 2 tasks) the
    deployment fails and rolls back. The old tasks are never deregistered and serve every request."""
    wrong = {"API_MLFLOW_URL": "http://mlflow-nowhere.invalid:5000/mlflow"}
    rehearsal = Rehearsal("staging", ("mlflow", "api"), tmp_path, platform=applied_platform, revision_env=wrong)
    rollout = rehearsal.run()
    attach_picture(
        rollout_svg(rollout, "a revision with a wrong MLflow address: the circuit breaker rolls back"),
        "deployment/rehearsal-breaker",
        "rehearsal: the circuit breaker",
    )
    s = rehearsal.replacement_summary
    assert s["outcome"] == "rolled_back" and s["replaced"] == 3, s
    assert s["failed"] == 0 and s["by_target"]["api"] > 0 and s["by_target"]["api #2"] > 0, s
    new = [life for name, life in rollout.tasks.items() if role(name) == "new"]
    assert len(new) == 4 and all(life.at(Step.IN_SERVICE) is None for life in new), rollout.describe()
    # the breaker counted three; the fourth was stopped by the rollback (replaced or SIGTERM)
    assert all({Step.REPLACED, Step.STOPPING} & set(life.steps) for life in new), rollout.describe()
    assert all(s["by_target"][life.name] == 0 for life in new), s  # no request ever reached the bad revision
    for key in ("api", "api #2"):
        assert rollout.tasks[key].ok and Step.DRAINING not in rollout.tasks[key].steps, rollout.tasks[key].describe()
    assert {"breaker": "rolled_back"} == {k: v for e in s["events"] for k, v in e.items() if k == "breaker"}
    # the deployment's judge, as for a fault in the middle of one (harness.faults.rollout): rolled
    # back, no target out of service before the deployment took it out, the old tasks clean, no failure
    verdicts = deployment_verdicts(rehearsal, "rolled_back")
    assert all(v.ok for v in verdicts), [str(v) for v in verdicts]
    assert leftovers(docker_client, rehearsal.session_id) == []


def test_a_stop_timeout_below_the_drain_fails_its_rule_and_is_a_forced_stop_in_the_rehearsal(
    docker_client, applied_platform, tmp_path, attach_picture
):
    """stopTimeout 10 s while the api drains for 15 s after SIGTERM: the rule says so on the plan,
    and the rehearsal's old task is killed (SIGKILL, exit 137) before it finished draining."""
    var_file = staging_with(
        tmp_path,
        "api",
        (r"stop_timeout\s+= \d+", "stop_timeout         = 10"),
        (r'API_DRAIN_SECONDS\s+= "\d+"', 'API_DRAIN_SECONDS    = "15"'),
    )
    rehearsal = Rehearsal("staging", ("mlflow", "api"), tmp_path, var_file=var_file, platform=applied_platform, tasks=1)
    rollout = rehearsal.run()
    attach_picture(
        rollout_svg(rollout, "stopTimeout 10 s below the api's 15 s drain: SIGKILL"),
        "deployment/rehearsal-forced-stop",
        "rehearsal: a forced stop",
    )
    assert rehearsal.model is not None
    (violation,) = check(rehearsal.model)["stop-timeout-covers-drain"]
    assert "stop_timeout" in str(violation), violation
    old = rollout.tasks["api"]
    assert not old.ok and old.at(Step.KILLED) is not None and old.exit_of("api").code == 137, old.describe()
    # killed at the stop timeout, not at the end of its own 15 s drain (Docker's SIGKILL, measured)
    assert 10.0 <= round(old.at(Step.STOPPED) - old.at(Step.STOPPING), 1) < 15.0, old.describe()
    assert "SIGKILL, a forced stop" in old.failure, old.failure
    assert leftovers(docker_client, rehearsal.session_id) == []
