"""terraform apply of the root module against a moto server, then boto3 reads back what AWS would
hold. moto drops the grace period and the deployment configuration on create: a second apply
stores the grace period, update_service the deployment configuration (see README)."""

import json
from pathlib import Path

import pytest

from harness.paths import environment_file
from harness.plan import observability
from harness.plan.dockerfile import service_healthcheck
from harness.plan.observability import unknown_metrics
from harness.rehearsal.driver import deploy

pytestmark = [pytest.mark.deployment, pytest.mark.terraform, pytest.mark.slow]
VAR_FILE = str(environment_file("staging"))


@pytest.fixture(scope="module")
def applied(applied_platform, make_model):
    """The session's applied platform (shared with the rehearsals), moved back to the staging plan."""
    model = make_model("staging")
    platform, moto = applied_platform, applied_platform.moto
    platform.apply(Path(VAR_FILE))
    platform.apply(Path(VAR_FILE), again=True)  # moto dropped the grace period on create
    ecs = moto.client("ecs")
    cluster = platform.cluster
    for name, svc in model.services.items():  # and the deployment configuration
        ecs.update_service(
            cluster=cluster,
            service=name,
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": svc.circuit_breaker, "rollback": svc.rollback},
                "minimumHealthyPercent": svc.min_healthy_percent,
                "maximumPercent": svc.max_percent,
            },
        )
    return moto, platform.tf, model, cluster


def test_the_alarm_topics_key_lets_cloudwatch_publish(applied):
    """As applied: the topic is encrypted with the plan's own key, and that key's policy (read back
    from KMS) lets CloudWatch use it, so an alarm reaches the subscribers."""
    from harness.plan.policies import key_admits_cloudwatch

    moto, tf, _, _ = applied
    topic = moto.client("sns").get_topic_attributes(TopicArn=tf.output()["alarm_topic_arn"])["Attributes"]
    key_id = topic.get("KmsMasterKeyId", "")
    assert key_id and not key_id.startswith("alias/aws/"), topic
    kms = moto.client("kms")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyManager"] == "CUSTOMER"
    policy = kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
    assert "cloudwatch.amazonaws.com" in policy and key_admits_cloudwatch(policy) == [], policy
    assert key_admits_cloudwatch(policy.replace("cloudwatch.amazonaws.com", "sns.amazonaws.com")) == [
        "kms:Decrypt",
        "kms:GenerateDataKey",
    ], "the check reads the principal"


def test_turning_mlflow_sign_in_on_replaces_its_route_with_the_sign_in(applied, applied_platform):
    """Terraform ignores the routes' actions (CodeDeploy swaps their target groups): on a running
    platform, setting mlflow_sign_in must still put the sign-in on MLflow's route, not only drop the
    VPC condition (which would leave MLflow public and unauthenticated)."""
    moto, tf, _, _ = applied
    pool = {
        "user_pool_arn": "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEfGhI",
        "user_pool_client_id": "1example23456789",
        "user_pool_domain": "mlplatform-staging",
    }
    variables = {
        "aws_endpoint": moto.url,
        "deletion_protection": False,
        "certificate_arn": applied_platform.certificate_arn,
        "mlflow_sign_in": pool,
    }
    plan_file = tf.workdir / "sign-in.tfplan"
    tf.run("plan", "-input=false", f"-out={plan_file}", *tf.var_args(VAR_FILE, variables))
    changes = {
        c["address"]: c["change"]
        for c in json.loads(tf.run("show", "-json", str(plan_file)).stdout)["resource_changes"]
    }
    route = changes['module.service["mlflow"].aws_lb_listener_rule.this["prod"]']
    assert route["actions"] == ["delete", "create"], route["actions"]
    assert [a["type"] for a in route["after"]["action"]] == ["authenticate-cognito", "forward"]
    assert changes['module.service["api"].aws_lb_listener_rule.this["prod"]']["actions"] == ["no-op"]


def test_the_database_requires_tls_as_applied(applied):
    rds = applied[0].client("rds")
    (db,) = rds.describe_db_instances()["DBInstances"]
    (group,) = [g["DBParameterGroupName"] for g in db["DBParameterGroups"]]
    found = rds.describe_db_parameters(DBParameterGroupName=group)["Parameters"]
    params = {p["ParameterName"]: p.get("ParameterValue") for p in found}
    assert params.get("rds.force_ssl") == "1", params


def test_every_applied_database_client_verifies_the_server(applied):
    """As applied: the service and dbinit containers of each task definition connect with
    verify-full against the bundle the images carry (the rule reads the plan; this, what ECS got)."""
    from harness.plan.timing import Container
    from harness.plan.transit import database_clients
    from harness.stack.postgres import IMAGE_BUNDLE

    moto, _, _, cluster = applied
    ecs = moto.client("ecs")
    seen = []
    for name in ("api", "mlflow"):
        arn = ecs.describe_services(cluster=cluster, services=[name])["services"][0]["taskDefinition"]
        for c in ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"]:
            env = {e["name"]: e["value"] for e in c.get("environment", [])}
            secrets = {s["name"]: s["valueFrom"] for s in c.get("secrets", [])}
            for prefix in database_clients(Container(c["name"], c["essential"], (), env, secrets, ())):
                seen.append(f"{name}/{c['name']}")
                assert (env.get(f"{prefix}SSLMODE"), env.get(f"{prefix}SSLROOTCERT")) == ("verify-full", IMAGE_BUNDLE)
    assert sorted(seen) == ["api/api", "api/dbinit", "mlflow/dbinit", "mlflow/mlflow"]


def test_the_bucket_refuses_plain_http(applied):
    from harness.plan.transit import denies_plain_http

    moto, tf, _, _ = applied
    bucket = tf.output()["artifact_bucket"]
    policy = json.loads(moto.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    assert any(denies_plain_http(s, bucket) for s in policy["Statement"]), policy


def test_the_public_listeners_serve_https_and_mlflow_is_routed_for_the_vpc_only(applied):
    """As applied: 443 presents the imported certificate with a TLS 1.2+ policy; 80 holds no rule
    (rules are evaluated before the default action) and only redirects to HTTPS; MLflow's routes
    admit only the VPC's addresses."""
    moto, tf, model, _ = applied
    elb = moto.client("elbv2")
    (lb,) = elb.describe_load_balancers()["LoadBalancers"]
    assert lb.get("Scheme", "internet-facing") == "internet-facing"  # AWS's default; moto omits it when unset
    listeners = {x["Port"]: x for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]}
    assert listeners[443]["Protocol"] == "HTTPS" and listeners[443]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    cert = listeners[443]["Certificates"][0]["CertificateArn"]
    assert moto.client("acm").describe_certificate(CertificateArn=cert)["Certificate"]["Status"] == "ISSUED"
    assert listeners[80]["Protocol"] == "HTTP"
    (redirect,) = listeners[80]["DefaultActions"]
    assert redirect["Type"] == "redirect" and redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert [
        r for r in elb.describe_rules(ListenerArn=listeners[80]["ListenerArn"])["Rules"] if not r["IsDefault"]
    ] == []
    rules = elb.describe_rules(ListenerArn=listeners[443]["ListenerArn"])["Rules"]
    groups = {tg: n for n, s in tf.output()["services"].items() for tg in s["target_group_arns"]}
    answered = [r for r in rules if [a["Type"] for a in r["Actions"]] == ["fixed-response"]]
    paths = [sorted(c.get("Values") or c["PathPatternConfig"]["Values"]) for r in answered for c in r["Conditions"]]
    assert paths == [["/health/deep", "/metrics"]], answered
    for rule in (r for r in rules if not r["IsDefault"] and r not in answered):
        (forward,) = [a for a in rule["Actions"] if a["Type"] == "forward"]
        sources = [v for c in rule["Conditions"] if c["Field"] == "source-ip" for v in c["SourceIpConfig"]["Values"]]
        if groups[forward["TargetGroupArn"]] == "mlflow":
            assert sources == [model.variables["vpc_cidr"]], rule
        else:
            assert sources == [], rule


def test_services_hold_the_planned_timings(applied):
    moto, _, model, cluster = applied
    services = moto.client("ecs").describe_services(cluster=cluster, services=["api", "mlflow"])["services"]
    for svc in services:
        planned = model.services[svc["serviceName"]]
        assert svc["healthCheckGracePeriodSeconds"] == planned.grace_period
        config = svc["deploymentConfiguration"]
        assert config["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        assert (config["minimumHealthyPercent"], config["maximumPercent"]) == (100, 200)
        assert svc["launchType"] == "FARGATE" and svc["desiredCount"] == planned.desired_count


def test_task_definitions_carry_the_dockerfiles_checks(applied):
    moto, _, _, cluster = applied
    ecs = moto.client("ecs")
    for name in ("api", "mlflow"):
        arn = ecs.describe_services(cluster=cluster, services=[name])["services"][0]["taskDefinition"]
        container = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"][0]
        hc, docker = container["healthCheck"], service_healthcheck(name)
        assert (hc["interval"], hc["timeout"], hc["retries"], hc["startPeriod"]) == (
            docker.interval,
            docker.timeout,
            docker.retries,
            docker.start_period,
        )
        assert docker.path in " ".join(hc["command"])


def test_target_groups_and_log_groups(applied):
    moto, _, model, _ = applied
    elb = moto.client("elbv2")
    groups = {tg["TargetGroupName"]: tg for tg in elb.describe_target_groups()["TargetGroups"]}
    for name, planned in model.services.items():
        tg = groups[f"mlplatform-staging-{name}-blue"]
        assert (
            tg["HealthCheckPath"],
            tg["HealthCheckIntervalSeconds"],
            tg["HealthCheckTimeoutSeconds"],
            tg["HealthyThresholdCount"],
            tg["UnhealthyThresholdCount"],
        ) == (
            planned.alb.path,
            planned.alb.interval,
            planned.alb.timeout,
            planned.alb.healthy_threshold,
            planned.alb.unhealthy_threshold,
        )
        attrs = {
            a["Key"]: a["Value"]
            for a in elb.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])["Attributes"]
        }
        assert attrs["deregistration_delay.timeout_seconds"] == str(int(planned.deregistration_delay))
    logs = moto.client("logs").describe_log_groups(logGroupNamePrefix="/ecs/mlplatform-staging")["logGroups"]
    assert {g["logGroupName"]: g["retentionInDays"] for g in logs} == model.log_retention


def test_aws_rejects_an_alb_timeout_not_below_the_interval(applied):
    moto, _, _, _ = applied
    elb = moto.client("elbv2")
    vpc = moto.client("ec2").describe_vpcs(Filters=[{"Name": "tag:project", "Values": ["mlplatform"]}])["Vpcs"][0]
    with pytest.raises(elb.exceptions.ClientError, match="must be smaller than the interval"):
        elb.create_target_group(
            Name="bad",
            Protocol="HTTP",
            Port=80,
            VpcId=vpc["VpcId"],
            TargetType="ip",
            HealthCheckIntervalSeconds=15,
            HealthCheckTimeoutSeconds=15,
        )


def test_deploy_driver_rolls_out_a_new_revision_on_the_applied_service(applied):
    moto, _, _, cluster = applied
    rollout = deploy(moto.client("ecs"), cluster, "api", budget=30, image="mlplatform-api:2", interval=0.1)
    assert rollout.outcome == "completed", rollout.reason


def _secret_arn(value_from: str) -> str:
    """arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>[:json-key:stage:version]"""
    return ":".join(value_from.split(":")[:7])


def test_every_secret_a_task_reads_exists_and_each_services_execution_role_may_read_only_its_own(applied):
    """As applied: each service's task has an execution role of its own; it may read its service's
    database secret (by name, matching the secret's ARN and not the other service's) and the master
    secret, which only the dbinit container is given."""
    import fnmatch

    moto, tf, _, cluster = applied
    ecs, sm, iam = moto.client("ecs"), moto.client("secretsmanager"), moto.client("iam")
    database = tf.output()["database"]
    master, own = database["master_secret_arn"], database["service_secret_arns"]
    roles = set()
    for name in ("api", "mlflow"):
        arn = ecs.describe_services(cluster=cluster, services=[name])["services"][0]["taskDefinition"]
        task = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        containers = {c["name"]: c for c in task["containerDefinitions"]}
        assert containers[name]["dependsOn"] == [{"containerName": "dbinit", "condition": "SUCCESS"}]
        assert containers["dbinit"]["essential"] is False
        read = {c: {_secret_arn(s["valueFrom"]) for s in containers[c].get("secrets", [])} for c in containers}
        assert read[name] == {own[name]} and read["dbinit"] == {own[name], master}, read
        for secret in read["dbinit"]:
            assert sm.describe_secret(SecretId=secret)["ARN"] == secret
        role = task["executionRoleArn"].rsplit("/", 1)[1]
        roles.add(role)
        assert sorted(iam.list_role_policies(RoleName=role)["PolicyNames"]) == [
            "read-its-own-secret",
            "read-the-master-secret-for-dbinit",
        ]
        (mine,) = iam.get_role_policy(RoleName=role, PolicyName="read-its-own-secret")["PolicyDocument"]["Statement"]
        assert mine["Action"] == ["secretsmanager:GetSecretValue"]
        other = next(o for o in own if o != name)
        assert fnmatch.fnmatchcase(own[name], mine["Resource"]) and not fnmatch.fnmatchcase(
            own[other], mine["Resource"]
        )
        (for_dbinit,) = iam.get_role_policy(RoleName=role, PolicyName="read-the-master-secret-for-dbinit")[
            "PolicyDocument"
        ]["Statement"]
        assert for_dbinit["Resource"] == master
    assert len(roles) == 2, "one execution role per service"


def test_every_applied_roles_inline_statements_name_their_actions_and_resources(applied):
    """What the plan cannot show (a policy with a value known only after apply) is checked as
    applied: every inline statement of every role, with the rule's own test."""
    from harness.plan.privilege import statement_findings

    moto, _, _, _ = applied
    iam, sm = moto.client("iam"), moto.client("secretsmanager")
    secrets = {
        s["Name"]: next((x for x in ("api", "mlflow") if f"/{x}/" in s["Name"]), None)
        for s in sm.list_secrets()["SecretList"]
    }
    checked = 0
    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        owner = next((s for s in ("api", "mlflow") if f"-{s}-" in name), None)
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
            for st in statements:
                assert statement_findings(st, owner, secrets) == [], (name, policy, st)
                checked += 1
    assert checked >= 5, "two roles' own secret and master statements, MLflow's bucket"
    assert statement_findings({"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}, "api", secrets)


def test_alarms_notify_the_topic_and_the_bucket_is_private(applied):
    moto, tf, _, _ = applied
    outputs = tf.output()
    alarms = moto.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert alarms and all(outputs["alarm_topic_arn"] in a["AlarmActions"] for a in alarms), alarms
    subscriptions = moto.client("sns").list_subscriptions_by_topic(TopicArn=outputs["alarm_topic_arn"])
    assert [s["Protocol"] for s in subscriptions["Subscriptions"]] == ["email"]
    body = json.loads(moto.client("cloudwatch").get_dashboard(DashboardName=outputs["dashboard_name"])["DashboardBody"])
    titles = {w["properties"]["title"] for w in body["widgets"]}
    assert {"api-0: target response time", "mlflow: running tasks and deployments"} <= titles, titles
    block = moto.client("s3").get_public_access_block(Bucket=outputs["artifact_bucket"])
    assert all(block["PublicAccessBlockConfiguration"].values())


def test_no_database_password_appears_in_plain_text_in_the_state_the_plan_or_the_reports(
    applied, applied_platform, harness_settings
):
    moto, tf, _, _ = applied
    certificate_arn = applied_platform.certificate_arn
    sm = moto.client("secretsmanager")
    database = tf.output()["database"]

    def password(arn: str) -> str:
        return json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])["password"]

    generated = [password(arn) for arn in database["service_secret_arns"].values()]
    assert [len(p) for p in generated] == [32, 32], "Secrets Manager generated them at apply"
    passwords = [password(database["master_secret_arn"]), *generated]  # moto's RDS keeps a fixed one
    state = tf.run("show", "-json").stdout
    plan_file = tf.workdir / "after-apply.tfplan"
    variables = {"aws_endpoint": moto.url, "deletion_protection": False, "certificate_arn": certificate_arn}
    tf.run("plan", "-input=false", f"-out={plan_file}", *tf.var_args(VAR_FILE, variables))
    plan = tf.run("show", "-json", str(plan_file)).stdout
    reports = "".join(
        p.read_text(errors="replace")
        for p in Path(harness_settings.reports_dir).rglob("*")
        if p.is_file() and p.stat().st_size < 20_000_000
    )
    for password in passwords:
        assert password not in state and password not in plan and password not in reports


def test_every_widget_and_alarm_names_a_metric_that_exists_with_dimensions_that_exist(applied):
    """The dashboard and the alarms as applied: each metric is one a metric filter of the plan
    produces (its namespace and name) or one of AWS's own, and each dimension names a load
    balancer, target group, cluster or service that exists; every target group has its alarm."""
    moto, tf, _, cluster = applied
    held = observability.applied(moto.client, cluster, tf.output()["dashboard_name"])
    filters, named, exists, groups = held.filters, held.named, held.exists, held.exists["TargetGroup"]
    assert unknown_metrics(named, filters, exists) == []
    assert {m for _, m, _ in named} >= {f.metric for f in filters}, "a filter's metric no widget or alarm shows"
    assert held.dimension("TargetGroup", "alarms") == groups, "every target group has its unhealthy-host alarm"
    # put the incident's kind of mistake back: a widget naming a target group that does not exist
    wrong = [("AWS/ApplicationELB", "UnHealthyHostCount", {**named[-1][2], "TargetGroup": "targetgroup/gone/0"})]
    assert unknown_metrics(wrong, filters, exists) != []
