"""The deployment's own verdicts of a fault in the middle of a rehearsed deployment
(harness.faults.rollout.deployment_verdicts), on recorded lifecycles: each fails when the behaviour
it names breaks."""

from types import SimpleNamespace

import pytest

from harness.faults.rollout import deployment_verdicts, outcome
from harness.lifecycle import Lifecycle, Rollout, Step
from harness.plan.timing import Alb
from harness.rehearsal.balancer import TargetPoller
from harness.rehearsal.tasks import RunningTask

pytestmark = [pytest.mark.harness, pytest.mark.unit]
ALB = Alb(15, 6, healthy_threshold=2, unhealthy_threshold=3, matcher="200", path="/health")


def task(key: str, started: float, in_service: float | None, *steps: tuple[Step, float], unhealthy=()):
    life = Lifecycle(key, 120, started)
    life.mark(Step.STARTED, started)
    if in_service is not None:
        life.mark(Step.IN_SERVICE, in_service)
    for step, at in steps:
        life.mark(step, at)
    poller = TargetPoller("http://t", ALB, 0, 1)
    poller.unhealthy_at = [t - started for t in unhealthy]  # the poller counts from the task's start
    return RunningTask(key, "api", life, 0.0, poller=poller)


def rehearsal(*tasks: RunningTask, **summary):
    rollout = Rollout()
    for t in tasks:
        rollout.tasks[t.key] = t.life
    s = {"strategy": "rolling", "outcome": "completed", "requests": 100, "failed": 0, "during_faults": 3} | summary
    return SimpleNamespace(replacement_summary=s, rollout=rollout, launched=list(tasks))


def verdicts(r, expected="completed"):
    return {v.name: v for v in deployment_verdicts(r, expected)}


def fleet():
    """An old task drained at 40 s and stopped at 70 s (its target failing after it left is right),
    a new one in service at 35 s."""
    old = task("api", 0, 30, (Step.DRAINING, 40), (Step.STOPPING, 70), (Step.STOPPED, 71), unhealthy=(75,))
    new = task("api (new revision)", 20, 35)
    return old, new


def test_a_deployment_that_kept_every_target_in_service_passes():
    v = verdicts(rehearsal(*fleet()))
    assert all(x.ok for x in v.values()), [str(x) for x in v.values()]


def test_a_target_drained_by_the_outage_fails_as_does_a_task_replaced_while_in_service():
    old, new = fleet()
    old.poller.unhealthy_at = [38 - 0]  # before the deployment deregistered it, at 40 s
    v = verdicts(rehearsal(old, new))
    assert (
        not v["no target left service"].ok
        and "api: its target unhealthy at 38.0s" in v["no target left service"].detail
    )
    old, new = fleet()
    new.life.mark(Step.REPLACED, 60)
    new.life.failure = "container UNHEALTHY while in service (ECS would replace it)"
    v = verdicts(rehearsal(old, new))
    assert (
        not v["no target left service"].ok
        and "replaced while in service at 60.0s" in v["no target left service"].detail
    )
    assert not v["every task"].ok


def test_the_outcome_and_the_client_requests_outside_the_fault_are_judged():
    assert not verdicts(rehearsal(*fleet(), outcome="rolled_back"))["outcome"].ok
    assert verdicts(rehearsal(*fleet(), outcome="rolled_back"), "rolled_back")["outcome"].ok
    assert not verdicts(rehearsal(*fleet(), failed=2))["client requests"].ok
    assert outcome({"strategy": "blue_green", "rolled_back": True}) == "rolled_back"
    # a rollback leaves the new revision failed: only the old tasks must be clean then
    old, new = fleet()
    new.life.failure = "never in service"
    assert verdicts(rehearsal(old, new), "rolled_back")["every task"].ok
    assert not verdicts(rehearsal(old, new))["every task"].ok
