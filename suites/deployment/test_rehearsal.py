"""The planned tasks rehearsed on Docker as ECS would run them (python -m harness rehearse): the
staging plan comes into service within its grace periods, and a task the plan gives no database
fails with the service's own words."""

import json
import re

import pytest

from fixtures.docker import leftovers
from harness.faults.rollout import deployment_verdicts
from harness.gantt import rollout_svg
from harness.lifecycle import Step, disagreements, timeline
from harness.paths import environment_file
from harness.plan.rules import check
from harness.rehearsal.rehearsal import Rehearsal
from harness.simulation.replay import replay
from harness.simulation.simulator import SimConfig, simulation_svg

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


# The simulator and the rehearsal agree on each event of the staging plan's rolling deployment
# within this many seconds: the rehearsal's checks run on the wall clock and its deployment acts on
# a one-second tick (the simulator's on the exact second), and the app's start lies somewhere within
# one ALB interval before its first passing check (docs/deployment.md, "The simulator and the
# rehearsal agree").
AGREEMENT_TOLERANCE = 5.0


def role(name: str) -> str | None:
    """The rehearsal's api tasks as the simulator names them: the running version old, the new one new."""
    return "new" if name.startswith("api (new revision)") else "old" if name.startswith("api") else None


@pytest.fixture(scope="module")
def staging_fleet(docker_client, applied_platform, tmp_path_factory):
    """The staging plan rehearsed once for the tests below: every task at the plan's counts (two api
    tasks, one MLflow), then the api's tasks replaced under client traffic."""
    reports = tmp_path_factory.mktemp("staging-fleet")
    rehearsal = Rehearsal("staging", ("mlflow", "api"), reports, platform=applied_platform)
    rehearsal.run()
    return rehearsal, reports


@pytest.mark.timeout(600)  # the fleet (five tasks) and, when it runs first, the session's apply (about 100 s)
def test_the_staging_plan_comes_into_service_and_a_rolling_replacement_loses_nothing(
    docker_client, staging_fleet, attach_picture
):
    rehearsal, reports = staging_fleet
    rollout = rehearsal.rollout
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
    # then both api tasks replaced: both new ones start at once (maximum 200 % of 2), and each time
    # one comes into service an old one leaves (minimum healthy 100 %)
    assert list(rollout.tasks) == ["mlflow", "api", "api #2", "api (new revision)", "api (new revision) #2"]
    starts = [rollout.tasks[k].started for k in ("mlflow", "api", "api #2")]
    assert max(starts) - min(starts) < 5, starts  # together, not one after another
    summary = rehearsal.replacement_summary
    assert summary["outcome"] == "completed" and summary["replaced"] == 0, summary
    assert summary["events"][0]["started"] == ["api (new revision)", "api (new revision) #2"], summary
    stopped = [(e["at"], key) for e in summary["events"] for key in e.get("stopped", [])]
    assert sorted(key for _, key in stopped) == ["api", "api #2"], summary
    in_service = sorted(rollout.tasks[n].at(Step.IN_SERVICE) for n in rollout.tasks if role(n) == "new")
    for k, (at, key) in enumerate(sorted(stopped)):
        # the k-th old task leaves only once k+1 new ones are in service (both on the rollout's
        # clock: ``in_service`` alone counts from a task's own start)
        assert at >= in_service[k], (key, at, in_service)
        # drained for the deregistration delay, then stopped gracefully on SIGTERM; times are
        # rounded to 0.1 s: compare their differences rounded alike (92.6 - 62.6 is
        # 29.999999999999993 in floating point, and failed CI once)
        old = rollout.tasks[key]
        assert round(old.at(Step.STOPPING) - old.at(Step.DRAINING), 1) >= 30, old.describe()
        assert round(old.at(Step.STOPPED) - old.at(Step.STOPPING), 1) < 30 and old.exit_of("api").code == 0
        assert Step.KILLED not in old.steps, old.describe()
    assert summary["failed"] == 0 and all(n > 0 for n in summary["by_target"].values()), summary
    measured = json.loads((reports / "timings.json").read_text())["rehearsal"]
    assert set(measured) == {"api", "mlflow"}
    assert rehearsal.session_id and leftovers(docker_client, rehearsal.session_id) == []


def test_the_simulator_and_the_rehearsal_agree_on_the_staging_plan(staging_fleet, attach_picture):
    """The simulator given the rehearsal's own boot times (and its dbinit and stop times) orders the
    rolling deployment's events as the rehearsal did, each within the tolerance, and finishes
    within it too: the model that judges every plan is the deployment that really ran."""
    rehearsal, _ = staging_fleet
    rehearsed = rehearsal.rollout
    began = min(rehearsed.tasks[n].started for n in rehearsed.tasks if role(n) == "new")
    assert rehearsal.model is not None
    simulated = replay(SimConfig.from_timing(rehearsal.model.services["api"]), rehearsed, role)
    attach_picture(
        simulation_svg(simulated, "the staging api's rolling deployment, simulated with the rehearsal's boot times"),
        "deployment/rehearsal-vs-simulator",
        "the simulator, given the rehearsal's boot times",
    )
    ours = timeline(rehearsed, role, since=began)
    theirs = timeline(simulated.rollout, lambda name: name.split()[0])
    said = "\n".join(
        f"{a.at:6.1f}s {a.kind:24} | {b.at:6.1f}s {b.kind}" for a, b in zip(ours, theirs, strict=False)
    )  # the rehearsal's, then the simulator's
    said += f"\n{simulated.describe()}"
    print(said)  # the margins, in the report's captured output
    assert simulated.outcome == "completed", said
    assert disagreements(ours, theirs, AGREEMENT_TOLERANCE, ("the rehearsal", "the simulator")) == [], said
    finished = max(e.at for e in ours)
    assert abs(finished - simulated.time) <= AGREEMENT_TOLERANCE, (finished, simulated.time, said)


@pytest.mark.proof
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


@pytest.mark.proof
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


@pytest.mark.proof
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


@pytest.mark.proof
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


@pytest.mark.proof
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
