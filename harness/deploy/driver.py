"""A small ECS deploy driver: register a new task definition revision, update the service, and
wait for the rollout within a budget that the simulator derives from the planned timings.

moto stands in for AWS in the tests. It does not run deployments: it reports the rollout state
and failed-task count it was configured with (MOTO_ECS_SERVICE_RUNNING, _FAILED_TASKS) when the
service was created. So moto checks the driver's calls and its judgement of what ECS reports;
the timing verdicts come from the simulator."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from harness.deploy.simulator import breaker_threshold
from harness.errors import WaitTimeout
from harness.wait import wait_until

REGISTER_KEYS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "runtimePlatform",
)


@dataclass
class Rollout:
    outcome: str  # completed | failed | timed_out
    task_definition: str
    elapsed: float
    budget: float
    last_seen: dict = field(default_factory=dict)
    reason: str = ""


def register_revision(ecs, current_arn: str, image: str | None = None, env: dict[str, str] | None = None) -> str:
    """A new revision of the service's task definition with a new image and/or environment."""
    td = ecs.describe_task_definition(taskDefinition=current_arn)["taskDefinition"]
    new = {k: copy.deepcopy(td[k]) for k in REGISTER_KEYS if td.get(k) is not None}
    container = new["containerDefinitions"][0]
    if image:
        container["image"] = image
    if env:
        merged = {e["name"]: e["value"] for e in container.get("environment", [])} | env
        container["environment"] = [{"name": k, "value": v} for k, v in sorted(merged.items())]
    return ecs.register_task_definition(**new)["taskDefinition"]["taskDefinitionArn"]


def judge(service: dict, new_arn: str, threshold: int) -> tuple[str | None, str]:
    """(outcome or None while in progress, reason) from what describe_services reports."""
    primary: dict = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), {})
    state = primary.get("rolloutState")
    failed = primary.get("failedTasks", 0)
    if state == "FAILED":
        return "failed", primary.get("rolloutStateReason", "rollout FAILED")
    if failed >= threshold:
        return "failed", f"{failed} failed tasks reached the circuit breaker threshold {threshold}"
    if (
        state == "COMPLETED"
        and service.get("taskDefinition") == new_arn
        and service.get("runningCount", 0) >= service.get("desiredCount", 0)
    ):
        return "completed", primary.get("rolloutStateReason", "rollout COMPLETED")
    return (
        None,
        f"rollout {state}, running {service.get('runningCount')}/{service.get('desiredCount')}, failed tasks {failed}",
    )


def deploy(
    ecs,
    cluster: str,
    service: str,
    *,
    budget: float,
    image: str | None = None,
    env: dict[str, str] | None = None,
    interval: float = 1.0,
    breaker_minimum: int = 3,
) -> Rollout:
    current = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    new_arn = register_revision(ecs, current["taskDefinition"], image, env)
    ecs.update_service(cluster=cluster, service=service, taskDefinition=new_arn, forceNewDeployment=True)
    threshold = breaker_threshold(current["desiredCount"], breaker_minimum)
    started = time.monotonic()
    seen: dict = {}

    def probe() -> tuple[str | None, str]:
        svc = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
        seen.clear()
        seen.update(svc)
        return judge(svc, new_arn, threshold)

    try:
        outcome, reason = wait_until(
            probe,
            until=lambda r: r[0] is not None,
            timeout=budget,
            interval=interval,
            what=f"the rollout of {service} to {new_arn.rsplit('/', 1)[-1]}",
        )
    except WaitTimeout as exc:
        return Rollout("timed_out", new_arn, time.monotonic() - started, budget, dict(seen), str(exc))
    assert outcome is not None  # what ``until`` waited for
    return Rollout(outcome, new_arn, time.monotonic() - started, budget, dict(seen), reason)
