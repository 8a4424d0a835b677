"""Replacements of the staging fleet that go wrong, rehearsed on Docker (the full proof): a
revision that never serves trips the circuit breaker while the old tasks keep serving; a stop
timeout below the drain is a forced stop."""

import pytest

from harness.faults.rollout import deployment_verdicts
from harness.gantt import rollout_svg
from harness.lifecycle import Step
from harness.plan.rules import check
from harness.rehearsal.rehearsal import Rehearsal
from pytest_harness.docker import leftovers
from suites.deployment.test_rehearsal import role
from suites.deployment.test_rehearsal_variants import staging_with

pytestmark = [pytest.mark.deployment, pytest.mark.docker, pytest.mark.slow, pytest.mark.proof]


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
