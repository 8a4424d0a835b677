"""The deploy driver against moto in-process: a rollout that completes, one that must be reported
failed, and the budget taken from the simulator."""

import boto3
import pytest
from moto import mock_aws

from harness.errors import ConfigurationError
from harness.rehearsal.driver import deploy, judge, judge_codedeploy
from harness.simulation.simulator import SimConfig, simulate

pytestmark = pytest.mark.deployment
CLUSTER, REGION = "mlplatform-staging", "eu-west-1"


@pytest.fixture
def ecs(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("ecs", region_name=REGION)
        client.create_cluster(clusterName=CLUSTER)
        yield client


def make_service(ecs, monkeypatch, running: int, failed: int = 0, desired: int = 2) -> str:
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", str(running))
    monkeypatch.setenv("MOTO_ECS_SERVICE_FAILED_TASKS", str(failed))
    td = ecs.register_task_definition(
        family="mlplatform-staging-mlflow",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="1024",
        memory="2048",
        containerDefinitions=[
            {
                "name": "mlflow",
                "image": "mlplatform-mlflow:1",
                "essential": True,
                "environment": [{"name": "MLFLOW_WORKERS", "value": "2"}],
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -f http://localhost:5000/mlflow/health"],
                    "interval": 10,
                    "timeout": 5,
                    "retries": 3,
                    "startPeriod": 90,
                },
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=CLUSTER, serviceName="mlflow", taskDefinition=td, desiredCount=desired, launchType="FARGATE"
    )
    return td


def budget() -> float:
    """Twice the simulated time to steady state of the planned MLflow timings (boot 40 s)."""
    cfg = SimConfig(
        desired=2,
        container_interval=10,
        container_timeout=5,
        container_retries=3,
        container_start=90,
        alb_interval=15,
        alb_timeout=5,
        healthy_threshold=2,
        unhealthy_threshold=3,
        grace=120,
        deregistration_delay=30,
    )
    return 2 * simulate(cfg, boot=40).time


def test_rollout_completes_with_a_new_revision(ecs, monkeypatch):
    old = make_service(ecs, monkeypatch, running=2)
    rollout = deploy(
        ecs, CLUSTER, "mlflow", budget=budget(), image="mlplatform-mlflow:2", env={"MLFLOW_WORKERS": "1"}, interval=0.01
    )
    assert rollout.outcome == "completed", rollout.reason
    assert rollout.task_definition.endswith(":2") and old.endswith(":1")
    new = ecs.describe_task_definition(taskDefinition=rollout.task_definition)["taskDefinition"]
    container = new["containerDefinitions"][0]
    assert container["image"] == "mlplatform-mlflow:2"
    assert {"name": "MLFLOW_WORKERS", "value": "1"} in container["environment"]
    assert container["healthCheck"]["startPeriod"] == 90  # carried over untouched
    svc = ecs.describe_services(cluster=CLUSTER, services=["mlflow"])["services"][0]
    assert svc["taskDefinition"] == rollout.task_definition


def test_rollout_with_failed_tasks_is_reported_failed(ecs, monkeypatch):
    make_service(ecs, monkeypatch, running=0, failed=3)
    rollout = deploy(ecs, CLUSTER, "mlflow", budget=budget(), image="mlplatform-mlflow:broken", interval=0.01)
    assert rollout.outcome == "failed"
    assert "3 failed tasks reached the circuit breaker threshold 3" in rollout.reason


def test_rollout_that_never_settles_times_out_with_what_it_saw(ecs, monkeypatch):
    make_service(ecs, monkeypatch, running=1)
    rollout = deploy(ecs, CLUSTER, "mlflow", budget=0.3, image="mlplatform-mlflow:3", interval=0.05)
    assert rollout.outcome == "timed_out"
    assert "rollout IN_PROGRESS, running 1/2" in rollout.reason
    assert rollout.last_seen["runningCount"] == 1


@pytest.mark.parametrize(
    "service,outcome",
    [
        ({"deployments": [{"status": "PRIMARY", "rolloutState": "FAILED", "rolloutStateReason": "x"}]}, "failed"),
        (
            {
                "taskDefinition": "new",
                "runningCount": 2,
                "desiredCount": 2,
                "deployments": [{"status": "PRIMARY", "rolloutState": "COMPLETED"}],
            },
            "completed",
        ),
        (
            {
                "taskDefinition": "old",
                "runningCount": 2,
                "desiredCount": 2,
                "deployments": [{"status": "PRIMARY", "rolloutState": "COMPLETED"}],
            },
            None,
        ),
    ],
)
def test_judge(service, outcome):
    assert judge(service, "new", 3)[0] == outcome


@pytest.mark.parametrize(
    "info,outcome,said",
    [
        ({"deploymentId": "d-1", "status": "Succeeded"}, "completed", "d-1 Succeeded"),
        (
            {
                "status": "Failed",
                "errorInformation": {"code": "ECS_UPDATE_ERROR", "message": "green tasks failed health checks"},
                "rollbackInfo": {"rollbackDeploymentId": "d-2"},
            },
            "failed",
            "ECS_UPDATE_ERROR green tasks failed health checks; rolled back by d-2",
        ),
        ({"status": "Stopped"}, "failed", "Stopped; not rolled back"),
        ({"status": "InProgress", "deploymentOverview": {"InProgress": 1, "Succeeded": 0}}, None, "{'InProgress': 1}"),
        ({"status": "Ready"}, None, "deployment Ready"),  # waiting to reroute (action_on_timeout STOP_DEPLOYMENT)
        ({"status": "Created"}, None, "deployment Created"),
    ],
)
def test_judge_codedeploy(info, outcome, said):
    """CodeDeploy's deployment statuses (GetDeployment: Created, Queued, InProgress, Baking, Ready,
    Succeeded, Failed, Stopped): only Succeeded completes; Failed and Stopped fail, naming the
    error and the rollback deployment if one was made."""
    got, reason = judge_codedeploy(info)
    assert got == outcome and said in reason, reason


def test_a_code_deploy_service_without_a_deployment_group_is_refused_naming_what_exists(ecs, monkeypatch):
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    td = ecs.register_task_definition(
        family="mlplatform-staging-api",
        containerDefinitions=[{"name": "api", "image": "mlplatform-api:1", "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=CLUSTER,
        serviceName="api",
        taskDefinition=td,
        desiredCount=1,
        deploymentController={"type": "CODE_DEPLOY"},
        loadBalancers=[
            {
                "targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/tg/1",
                "containerName": "api",
                "containerPort": 8000,
            }
        ],
    )
    codedeploy = boto3.client("codedeploy", region_name=REGION)
    codedeploy.create_application(applicationName="other", computePlatform="ECS")
    codedeploy.create_deployment_group(
        applicationName="other",
        deploymentGroupName="other",
        serviceRoleArn="arn:aws:iam::1:role/r",
        ecsServices=[{"clusterName": CLUSTER, "serviceName": "mlflow"}],
    )
    with pytest.raises(ConfigurationError, match=f"deployment group for the ECS service {CLUSTER}/api.*other/other"):
        deploy(ecs, CLUSTER, "api", budget=1.0, image="mlplatform-api:2", codedeploy=codedeploy)
