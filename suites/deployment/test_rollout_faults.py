"""Faults in the middle of a rehearsed deployment (scenarios/rollouts/, docs/faults.md): the
database frozen mid rolling replacement, MLflow slow through a blue/green shift. Each judged by the
fault judge, target by target behind the rehearsal's listener, and as a deployment; each with its
Gantt chart (the fault's window on it) and its health timeline in the report."""

import pytest

from harness.lifecycle import Step
from pytest_harness.docker import leftovers

pytestmark = [pytest.mark.deployment, pytest.mark.docker, pytest.mark.terraform, pytest.mark.slow, pytest.mark.proof]


@pytest.mark.timeout(600)
def test_postgres_frozen_in_the_middle_of_a_rolling_replacement_drains_no_task_and_loses_nothing(
    docker_client, applied_platform, rollout_fault
):
    """scenarios/rollouts/rolling-postgres-frozen.yaml: the database paused for longer than the
    load balancer needs to take a failing target out of service, from the moment the first new
    task comes into service, the old ones still draining. Judged as the fault scenarios are
    (detection on /health/deep by every target, the load balancer's /health never failing on any,
    recovery, every acknowledged write recorded once), and as a deployment (completed, no target
    out of service before its deregistration, every task clean). With /health/deep as the load
    balancer's path (the incident's check), every target leaves service and this fails
    (docs/measured.md)."""
    result = rollout_fault("rolling-postgres-frozen", applied_platform)
    assert result.verdicts, "never judged"
    failed = [str(v) for v in result.verdicts if not v.ok]
    assert not failed, "\n".join(failed)
    rehearsal, (start, end) = result.rehearsal, result.window
    alb = rehearsal.model.services["api"].alb
    # long enough for the load balancer to drain every target, were its check to fail
    assert end - start > alb.interval * alb.unhealthy_threshold + alb.timeout, (start, end, alb)
    # in the middle of the replacement: the old tasks had not stopped yet when the database froze
    assert all(start < rehearsal.rollout.tasks[k].at(Step.STOPPED) for k in ("api", "api #2")), start
    writer = result.observation.writer
    assert writer.clear_failures and writer.retried, "the freeze never reached a write"
    assert leftovers(docker_client, result.rehearsal.session_id) == []


@pytest.mark.timeout(600)
def test_mlflow_slow_through_a_blue_green_shift_drains_no_task_and_loses_nothing(
    docker_client, blue_green_platform, blue_green_var_file, rollout_fault
):
    """scenarios/rollouts/blue-green-mlflow-slow.yaml: every answer of MLflow to the api (blue's
    and green's, through a fault proxy under MLflow's Cloud Map name) 1.5 s late, from the canary's
    first shift through the move of the rest of the traffic and blue's drain. Judged as the fault
    scenarios are and as a deployment (completed; no target out of service, so no unhealthy-host
    alarm would roll it back; every task clean; every acknowledged write recorded once)."""
    result = rollout_fault("blue-green-mlflow-slow", blue_green_platform, blue_green_var_file)
    assert result.verdicts, "never judged"
    failed = [str(v) for v in result.verdicts if not v.ok]
    assert not failed, "\n".join(failed)
    s, (start, end) = result.rehearsal.replacement_summary, result.window
    assert [p for _, p in s["shifts"]] == [10, 100] and start <= s["shifts"][1][0] <= end, (start, end, s)
    alb = result.rehearsal.model.services["api"].alb
    # long enough for the load balancer to drain every target, were its check to fail
    assert end - start > alb.interval * alb.unhealthy_threshold + alb.timeout, (start, end, alb)
    assert result.observation.applied, "the latency never took effect"
    writer = result.observation.writer
    assert writer.clear_failures and writer.retried, "MLflow's slowness never reached a write"
    assert leftovers(docker_client, result.rehearsal.session_id) == []
