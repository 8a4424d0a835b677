"""The planned tasks rehearsed on Docker as ECS would run them (python -m harness rehearse): the
staging plan comes into service within its grace periods, and a task the plan gives no database
fails with the service's own words."""

import json
import re

import pytest

from fixtures.docker import leftovers
from harness.gantt import rollout_svg
from harness.lifecycle import Step
from harness.paths import environment_file
from harness.rehearsal.rehearsal import Rehearsal

pytestmark = [pytest.mark.deployment, pytest.mark.docker, pytest.mark.slow]
API_WITHOUT_DATABASE = {
    "main.tf": (
        (
            r'(\{ for k, v in local\.database_env\[each\.key\] : "\$\{local\.prefix\[each\.key\]\}\$\{k\}" => v \},)',
            r'each.key == "api" ? {} : \1',
        ),
        (r"(?m)^  secrets = \{\n", '  secrets = each.key == "api" ? {} : {\n'),
    )
}


@pytest.mark.timeout(600)  # the fleet (five tasks) and, when it runs first, the session's apply (about 100 s)
def test_the_staging_plan_comes_into_service_and_a_rolling_replacement_loses_nothing(
    docker_client, applied_platform, tmp_path, attach_picture
):
    rehearsal = Rehearsal("staging", ("mlflow", "api"), tmp_path, platform=applied_platform)
    rollout = rehearsal.run()
    attach_picture(
        rollout_svg(rollout, "staging plan rehearsed on Docker"), "deployment/rehearsal-staging", "rehearsal"
    )
    for t in rollout.tasks.values():
        assert t.ok, t.describe()
        dbinit = t.exit_of("dbinit")
        assert dbinit is not None and dbinit.code == 0, t.describe()
        assert dbinit.at <= t.at(Step.RUNNING) < t.at(Step.CONTAINER_HEALTHY), t.describe()
        assert t.at(Step.IN_SERVICE) == max(t.at(Step.CONTAINER_HEALTHY), t.at(Step.TARGET_HEALTHY))
    # the plan's counts (staging: two api tasks, one MLflow), started together, each with its dbinit;
    # then both api tasks replaced at once (minimum healthy 100 %, maximum 200 % of 2)
    assert list(rollout.tasks) == ["mlflow", "api", "api #2", "api (new revision)", "api (new revision) #2"]
    starts = [rollout.tasks[k].started for k in ("mlflow", "api", "api #2")]
    assert max(starts) - min(starts) < 5, starts  # together, not one after another
    summary = rehearsal.replacement_summary
    assert summary["batches"] == [{"started": 2, "stopped": 2}], summary
    for key in ("api", "api #2"):
        # each old api task drained for the deregistration delay, then stopped gracefully on SIGTERM;
        # times are rounded to 0.1 s: compare their differences rounded alike (92.6 - 62.6 is
        # 29.999999999999993 in floating point, and failed CI once)
        old = rollout.tasks[key]
        assert round(old.at(Step.STOPPING) - old.at(Step.DRAINING), 1) >= 30, old.describe()
        assert round(old.at(Step.STOPPED) - old.at(Step.STOPPING), 1) < 30 and old.exit_of("api").code == 0
        # old tasks leave only once both new ones are in service
        # (both on the rollout's clock: ``in_service`` alone counts from the task's own start)
        new = [rollout.tasks[n].at(Step.IN_SERVICE) for n in summary["by_target"] if "new" in n]
        assert old.at(Step.DRAINING) >= max(new), (old.describe(), new)
    assert summary["failed"] == 0 and all(n > 0 for n in summary["by_target"].values()), summary
    measured = json.loads((tmp_path / "timings.json").read_text())["rehearsal"]
    assert set(measured) == {"api", "mlflow"}
    assert rehearsal.session_id and leftovers(docker_client, rehearsal.session_id) == []


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
