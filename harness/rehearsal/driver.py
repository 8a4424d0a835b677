"""A small ECS deploy driver: register a new task definition revision, then deploy it the way the
service is deployed (its deployment controller) and wait for the outcome within a budget that the
simulator derives from the planned timings:

- ``ECS`` (rolling): ``update_service``, then ``describe_services`` until the rollout completes,
  fails (rolloutState, the circuit breaker's count of failed tasks) or the budget ends;
- ``CODE_DEPLOY`` (blue/green): ``update_service`` cannot deploy such a service (AWS refuses a new
  task definition there), so the driver finds the deployment group that names the service, writes
  the AppSpec (the new revision, the container and port the load balancer routes to) and creates a
  CodeDeploy deployment, then ``get_deployment`` until Succeeded, Failed or Stopped (a rollback is
  named with its deployment id) or the budget ends.

moto stands in for AWS in the tests. It does not run deployments: ECS reports the rollout state and
failed-task count it was configured with (MOTO_ECS_SERVICE_RUNNING, _FAILED_TASKS) when the service
was created; CodeDeploy records the deployment with its AppSpec and leaves it ``Created`` for ever
(moto 5.2: no progression, no stop_deployment, no task sets made). So moto checks the driver's calls
and its judgement of what AWS reports; the timing verdicts come from the simulator and the
rehearsal (harness/rehearsal/rehearsal.py runs blue/green on Docker)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.errors import ConfigurationError, WaitTimeout
from harness.plan.timing import breaker_threshold
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
    deployment_id: str = ""  # CodeDeploy's, for a blue/green deployment


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
    codedeploy=None,
) -> Rollout:
    """Deploy a new revision of ``service`` as its deployment controller does (``codedeploy``: a
    CodeDeploy client, needed for a CODE_DEPLOY service)."""
    current = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    controller = (current.get("deploymentController") or {}).get("type", "ECS")
    if controller == "CODE_DEPLOY" and codedeploy is None:
        raise ConfigurationError(
            f"a CodeDeploy client to deploy {service}",
            "none",
            "the service's deployment controller is CODE_DEPLOY (blue/green): pass codedeploy=",
        )
    new_arn = register_revision(ecs, current["taskDefinition"], image, env)
    if controller == "CODE_DEPLOY":
        return deploy_blue_green(codedeploy, cluster, current, new_arn, budget=budget, interval=interval)
    ecs.update_service(cluster=cluster, service=service, taskDefinition=new_arn, forceNewDeployment=True)
    threshold = breaker_threshold(current["desiredCount"], breaker_minimum)
    return _follow(
        lambda: ecs.describe_services(cluster=cluster, services=[service])["services"][0],
        lambda svc: judge(svc, new_arn, threshold),
        new_arn,
        budget,
        interval,
        f"the rollout of {service} to {new_arn.rsplit('/', 1)[-1]}",
    )


def _follow(
    read: Callable[[], dict],
    verdict: Callable[[dict], tuple[str | None, str]],
    new_arn: str,
    budget: float,
    interval: float,
    what: str,
    deployment_id: str = "",
) -> Rollout:
    """Read the deployment's state every ``interval`` until ``verdict`` gives an outcome or the
    budget ends (``timed_out``, with the last state seen)."""
    started = time.monotonic()
    seen: dict = {}

    def probe() -> tuple[str | None, str]:
        state = read()
        seen.clear()
        seen.update(state)
        return verdict(state)

    try:
        outcome, reason = wait_until(
            probe, until=lambda r: r[0] is not None, timeout=budget, interval=interval, what=what
        )
    except WaitTimeout as exc:
        return Rollout("timed_out", new_arn, time.monotonic() - started, budget, dict(seen), str(exc), deployment_id)
    assert outcome is not None  # what ``until`` waited for
    return Rollout(outcome, new_arn, time.monotonic() - started, budget, dict(seen), reason, deployment_id)


CODEDEPLOY_DONE = {"Succeeded": "completed", "Failed": "failed", "Stopped": "failed"}


def deployment_group(codedeploy, cluster: str, service: str) -> tuple[str, dict]:
    """(application, deployment group) of the CodeDeploy group that deploys ``cluster``/``service``."""
    seen = []
    for app in codedeploy.list_applications()["applications"]:
        for name in codedeploy.list_deployment_groups(applicationName=app)["deploymentGroups"]:
            group = codedeploy.get_deployment_group(applicationName=app, deploymentGroupName=name)[
                "deploymentGroupInfo"
            ]
            seen.append(f"{app}/{name}")
            if {"clusterName": cluster.rsplit("/", 1)[-1], "serviceName": service} in group.get("ecsServices", []):
                return app, group
    raise ConfigurationError(
        f"a CodeDeploy deployment group for the ECS service {cluster}/{service}",
        ", ".join(seen) or "no deployment group at all",
        "the plan creates one per service when deployment_strategy = blue_green",
    )


def appspec(task_definition: str, load_balancer: dict) -> str:
    """The AppSpec of an ECS deployment: the new revision, and the container and port the load
    balancer routes to (CodeDeploy AppSpec reference, "AppSpec 'resources' section for ECS")."""
    return json.dumps(
        {
            "version": 0.0,
            "Resources": [
                {
                    "TargetService": {
                        "Type": "AWS::ECS::Service",
                        "Properties": {
                            "TaskDefinition": task_definition,
                            "LoadBalancerInfo": {
                                "ContainerName": load_balancer["containerName"],
                                "ContainerPort": load_balancer["containerPort"],
                            },
                        },
                    }
                }
            ],
        }
    )


def judge_codedeploy(info: dict) -> tuple[str | None, str]:
    """(outcome or None while in progress, reason) from what get_deployment reports."""
    status = info.get("status", "")
    outcome = CODEDEPLOY_DONE.get(status)
    if outcome == "completed":
        return outcome, f"deployment {info.get('deploymentId')} Succeeded"
    if outcome == "failed":
        error = info.get("errorInformation") or {}
        rollback = (info.get("rollbackInfo") or {}).get("rollbackDeploymentId")
        said = " ".join(x for x in (error.get("code"), error.get("message")) if x)
        return outcome, (
            f"deployment {status}"
            + (f": {said}" if said else "")
            + (f"; rolled back by {rollback}" if rollback else "; not rolled back")
        )
    overview = {k: v for k, v in (info.get("deploymentOverview") or {}).items() if v}
    return None, f"deployment {status or 'unknown'}" + (f", targets {overview}" if overview else "")


def deploy_blue_green(
    codedeploy, cluster: str, service: dict, new_arn: str, *, budget: float, interval: float
) -> Rollout:
    """A CodeDeploy deployment of ``new_arn`` to ``service`` (describe_services' view of it)."""
    app, group = deployment_group(codedeploy, cluster, service["serviceName"])
    balancers = service.get("loadBalancers") or []
    if not balancers:
        raise ConfigurationError(
            f"a load balancer on the ECS service {service['serviceName']}",
            "none",
            "a CodeDeploy blue/green deployment moves the load balancer's traffic",
        )
    deployment_id = codedeploy.create_deployment(
        applicationName=app,
        deploymentGroupName=group["deploymentGroupName"],
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec(new_arn, balancers[0])}},
        description=f"harness: {service['serviceName']} to {new_arn.rsplit('/', 1)[-1]}",
    )["deploymentId"]
    return _follow(
        lambda: codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"],
        judge_codedeploy,
        new_arn,
        budget,
        interval,
        f"CodeDeploy deployment {deployment_id} of {service['serviceName']} to {new_arn.rsplit('/', 1)[-1]}",
        deployment_id,
    )
