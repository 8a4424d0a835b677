"""Blue/green that runs, on the staging plan deployed blue/green (deployment_strategy =
"blue_green"), applied to moto and rehearsed on Docker.

The deploy driver: a CODE_DEPLOY service is deployed through CodeDeploy (update_service cannot
deploy it), with the deployment group the plan made for it and an AppSpec naming the new revision
and the container and port the load balancer routes to. moto records the deployment and never runs
it (its status stays Created; moto 5.2 has no progression, no stop_deployment and makes no task
sets), so the outcome there is a timeout that says what it last saw; the judgement of CodeDeploy's
statuses is tested on their documented forms (test_deploy_driver.py).

The rehearsal: green beside blue in the second target group, traffic moved on the listener only
once green is in service (a canary here, its steps scaled), blue kept for the termination wait,
then drained and stopped, and not one client request failed; a green that never comes into
service moves no traffic and is removed."""

import json

import pytest

from harness.errors import ConfigurationError
from harness.gantt import rollout_svg
from harness.lifecycle import Milestone, Step
from harness.plan import observability
from harness.rehearsal.driver import deploy
from harness.rehearsal.rehearsal import Rehearsal
from pytest_harness.docker import leftovers

pytestmark = [pytest.mark.deployment, pytest.mark.terraform, pytest.mark.slow, pytest.mark.proof]
CANARY = "CodeDeployDefault.ECSCanary10Percent5Minutes"
SCALE = 0.02  # the canary's 5 minutes and the 5-minute termination wait as 6 s each


@pytest.fixture(scope="module")
def var_file(blue_green_var_file):
    return blue_green_var_file


@pytest.fixture(scope="module")
def platform(blue_green_platform):
    return blue_green_platform


@pytest.fixture(scope="module")
def blue_green(platform):
    moto = platform.moto
    return moto.client("ecs"), moto.client("codedeploy"), platform.cluster


def test_a_code_deploy_service_is_deployed_through_its_codedeploy_group_with_the_new_revision(blue_green):
    ecs, codedeploy, cluster = blue_green
    before = ecs.describe_services(cluster=cluster, services=["api"])["services"][0]
    assert before["deploymentController"]["type"] == "CODE_DEPLOY"
    rollout = deploy(ecs, cluster, "api", budget=1.0, image="mlplatform-api:2", interval=0.1, codedeploy=codedeploy)
    # moto never runs the deployment: the driver waits out its budget and says what it saw
    assert rollout.outcome == "timed_out" and rollout.last_seen["status"] == "Created", rollout.reason
    info = codedeploy.get_deployment(deploymentId=rollout.deployment_id)["deploymentInfo"]
    assert info["applicationName"] == info["deploymentGroupName"] == "mlplatform-staging-api"
    assert info["deploymentConfigName"] == "CodeDeployDefault.ECSAllAtOnce"  # the group's, from the plan
    spec = json.loads(info["revision"]["appSpecContent"]["content"])["Resources"][0]["TargetService"]
    assert spec["Type"] == "AWS::ECS::Service"
    assert spec["Properties"]["TaskDefinition"] == rollout.task_definition != before["taskDefinition"]
    lb = before["loadBalancers"][0]
    assert spec["Properties"]["LoadBalancerInfo"] == {"ContainerName": "api", "ContainerPort": lb["containerPort"]}
    new = ecs.describe_task_definition(taskDefinition=rollout.task_definition)["taskDefinition"]
    assert new["containerDefinitions"][0]["image"] == "mlplatform-api:2"
    # ECS itself still runs the old revision: only CodeDeploy may move a CODE_DEPLOY service
    after = ecs.describe_services(cluster=cluster, services=["api"])["services"][0]
    assert after["taskDefinition"] == before["taskDefinition"]


def test_each_deployment_group_rolls_back_and_names_both_target_groups_and_both_listeners(platform, blue_green):
    """What AWS would hold for the plan's deployment groups (moto 5.2 returns no alarmConfiguration:
    the alarms it names are checked on the plan, rule rollback-alarms-fire-within-termination-wait)."""
    _, codedeploy, _ = blue_green
    elbv2 = platform.moto.client("elbv2")
    listeners = {
        listener["ListenerArn"]: listener["Port"]
        for lb in elbv2.describe_load_balancers()["LoadBalancers"]
        for listener in elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }
    target_groups = {tg["TargetGroupName"] for tg in elbv2.describe_target_groups()["TargetGroups"]}
    for service in ("api", "mlflow"):
        name = f"mlplatform-staging-{service}"
        group = codedeploy.get_deployment_group(applicationName=name, deploymentGroupName=name)["deploymentGroupInfo"]
        rollback = group["autoRollbackConfiguration"]
        assert rollback["enabled"] and set(rollback["events"]) == {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"}
        wait = group["blueGreenDeploymentConfiguration"]["terminateBlueInstancesOnDeploymentSuccess"]
        assert (wait["action"], wait["terminationWaitTimeInMinutes"]) == ("TERMINATE", 5)
        (pair,) = group["loadBalancerInfo"]["targetGroupPairInfoList"]
        names = [tg["name"] for tg in pair["targetGroups"]]
        assert len(set(names)) == 2 and set(names) <= target_groups, (names, target_groups)
        assert [listeners[arn] for arn in pair["prodTrafficRoute"]["listenerArns"]] == [443]  # HTTPS; 80 only redirects
        # the test listener, where green takes test traffic before production traffic moves
        assert [listeners[arn] for arn in pair["testTrafficRoute"]["listenerArns"]] == [8080]
        assert group["ecsServices"] == [{"clusterName": "mlplatform-staging", "serviceName": service}]


def test_the_dashboard_and_the_alarms_watch_both_target_groups_of_each_service(platform, blue_green):
    """Under blue/green each service has two target groups, and traffic alternates between them
    from one deployment to the next: the dashboard and the unhealthy-host alarms name all four, and
    every alarm the deployment groups roll back on exists."""
    _, _, cluster = blue_green
    tf = platform.tf
    held = observability.applied(platform.moto.client, cluster, tf.output()["dashboard_name"])
    groups = held.exists["TargetGroup"]
    assert len(groups) == 4 and held.unknown() == []
    assert held.dimension("TargetGroup", "widgets") == groups == held.dimension("TargetGroup", "alarms")
    names = {a["AlarmName"] for a in held.alarms}
    for service in ("api", "mlflow"):
        prefix = f"mlplatform-staging-{service}"
        assert {
            f"{prefix}-health-check-failures",
            f"{prefix}-0-unhealthy-hosts",
            f"{prefix}-1-unhealthy-hosts",
        } <= names


def test_a_code_deploy_service_without_a_codedeploy_client_is_refused_with_the_fix(blue_green):
    ecs, _, cluster = blue_green
    with pytest.raises(ConfigurationError, match="(?s)CodeDeploy client to deploy mlflow.*CODE_DEPLOY"):
        deploy(ecs, cluster, "mlflow", budget=1.0, image="mlplatform-mlflow:2")


def staging(platform, var_file, tmp_path, **blue_green) -> Rehearsal:
    """The staging plan deployed blue/green, both services, on the module's platform."""
    return Rehearsal("staging", ("mlflow", "api"), tmp_path, var_file=var_file, platform=platform, **blue_green)


@pytest.mark.docker
@pytest.mark.timeout(600)  # the fleet: two blue and two green api tasks beside MLflow
def test_blue_green_moves_traffic_to_green_only_once_it_is_in_service_and_no_request_fails(
    docker_client, platform, blue_green, var_file, tmp_path, attach_picture
):
    rehearsal = staging(platform, var_file, tmp_path, traffic=CANARY, time_scale=SCALE)
    rollout = rehearsal.run()
    attach_picture(
        rollout_svg(rollout, "staging plan, blue/green (canary, steps x0.02) rehearsed on Docker"),
        "deployment/rehearsal-staging-blue-green",
        "rehearsal",
    )
    for t in rollout.tasks.values():
        assert t.ok, t.describe()
    s = rehearsal.replacement_summary
    assert s["strategy"] == "blue_green" and s["traffic"] == CANARY and s["failed"] == 0, s
    blue, green, reached = rollout.tasks["api"], rollout.tasks["api (green)"], rollout.milestones
    (canary_at, ten), (full_at, hundred) = s["shifts"]
    assert (ten, hundred) == (10, 100)
    # traffic moves only once green is in service, the canary holds its (scaled) 5 minutes
    assert reached[Milestone.GREEN_IN_SERVICE] <= canary_at and round(full_at - canary_at, 1) >= 300 * SCALE
    # validated through the test listener first (the plan has one), then production traffic moved
    assert s["validation"] == "passed" and reached[Milestone.VALIDATED] <= canary_at, s
    assert green.at(Step.IN_SERVICE) <= canary_at, rollout.describe()
    # both served; after the last shift nothing reaches blue; blue kept for the termination wait,
    # then drained for the deregistration delay and stopped gracefully
    assert all(n > 0 for n in s["by_target"].values()) and s["on_blue_after_the_last_shift"] == 0, s
    assert round(reached[Milestone.TERMINATION_WAIT_OVER] - full_at, 1) >= 300 * SCALE
    assert round(blue.at(Step.STOPPING) - blue.at(Step.DRAINING), 1) >= 30 and blue.exit_of("api").code == 0
    assert rehearsal.session_id and leftovers(docker_client, rehearsal.session_id) == []


@pytest.mark.docker
def test_a_green_that_never_comes_into_service_moves_no_traffic_and_is_removed(
    docker_client, platform, blue_green, var_file, tmp_path
):
    # a revision with a typo in its configuration
    rehearsal = staging(platform, var_file, tmp_path, revision_env={"API_DB_TIMEOUT": "soon"})
    rollout = rehearsal.run()
    green = rollout.tasks["api (green)"]
    assert not green.ok and "api exited 2" in green.failure and "API_DB_TIMEOUT" in green.failure, green.describe()
    s = rehearsal.replacement_summary
    assert s["rolled_back"] and s["shifts"] == [] and s["failed"] == 0, s
    assert s["by_target"]["api (green)"] == 0 and s["by_target"]["api"] > 0
    blue = rollout.tasks["api"]
    assert blue.ok and Step.STOPPING not in blue.steps, blue.describe()  # blue keeps serving
    assert leftovers(docker_client, rehearsal.session_id) == []


@pytest.mark.docker
def test_a_green_that_passes_its_checks_but_cannot_work_fails_validation_on_the_test_listener_and_is_removed(
    docker_client, platform, blue_green, var_file, tmp_path
):
    """The case the test listener exists for: the load balancer's check passes (MLflow made
    optional, so its wrong URL only warns), yet no write can go through; the validation through the
    test listener catches it before any production request reaches green."""
    wrong = {"API_REQUIRED": "postgres", "API_MLFLOW_URL": "http://mlflow-nowhere.invalid:5000/mlflow"}
    rehearsal = staging(platform, var_file, tmp_path, revision_env=wrong)
    rollout = rehearsal.run()
    green, blue = rollout.tasks["api (green)"], rollout.tasks["api"]
    assert green.in_service is not None, green.describe()  # it did pass the load balancer's check
    assert not green.ok and "validation through the test listener failed: GET /health answered 200 'warn'" in (
        green.failure
    ), green.describe()
    s = rehearsal.replacement_summary
    assert s["rolled_back"] and s["shifts"] == [] and s["failed"] == 0, s
    assert s["by_target"]["api (green)"] == 0 and s["by_target"]["api"] > 0, s
    assert {Milestone.VALIDATION_FAILED, Milestone.ROLLED_BACK} <= set(rollout.milestones), rollout.describe()
    assert blue.ok and Step.STOPPING not in blue.steps, blue.describe()
    assert leftovers(docker_client, rehearsal.session_id) == []
