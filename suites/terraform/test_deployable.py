"""The rules that say whether the plan can start at all: each holds on the shipped environments
and fails, naming the file and field, when its broken value is put back into the Terraform."""

import dataclasses

import pytest

from harness.paths import environment_file, environments, shown
from harness.plan.rules import RULES, check
from harness.plan.timing import from_plan
from pytest_harness.terraform import TYPICAL

pytestmark = pytest.mark.terraform
ENVIRONMENTS = tuple(environments())  # every rule runs on every environment file present
STAGING = shown(environment_file("staging"))  # as the rules name it
NEW_RULES = [
    "containers-pass-their-config-check",
    "private-tasks-have-egress",
    "api-reaches-mlflow-internally",
    "mlflow-artifacts-durable",
    "alarms-notify",
    "deregistration-bounded",
    "api-memory-fits",
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_shipped_environments_can_start(make_model, env):
    model = make_model(env)
    broken = {rule: [str(v) for v in RULES[rule](model)] for rule in NEW_RULES}
    assert not any(broken.values()), broken


def test_the_api_without_its_database_variables_fails_naming_them(make_edited_model):
    model = make_edited_model(
        "staging",
        {
            "main.tf": (
                (
                    r"(\{ for k, v in local\.database_env\[each\.key\] : "
                    r'"\$\{local\.prefix\[each\.key\]\}\$\{k\}" => v \},)',
                    r'each.key == "api" ? {} : \1',
                ),
                (r"(?m)^  secrets = \{\n", '  secrets = each.key == "api" ? {} : {\n'),
            )
        },
    )
    violations = check(model)["containers-pass-their-config-check"]
    assert [v.where for v in violations] == [f"{STAGING}: services.api, container api (environment and secrets)"], (
        violations
    )
    assert "API_DATABASE_URL: required but not set" in str(violations[0])


def test_a_dbinit_without_the_master_secret_fails(make_edited_model):
    model = make_edited_model("staging", {"main.tf": ((r"      DBINIT_MASTER_PASSWORD = .*\n", ""),)})
    text = "\n".join(str(v) for v in check(model)["containers-pass-their-config-check"])
    assert "container dbinit" in text and "DBINIT_MASTER_PASSWORD: required but not set" in text


@pytest.mark.parametrize(
    "env, files, missing",
    [
        (
            "staging",
            {"modules/network/main.tf": ((r"nat_count = var\.egress == .*\n", "nat_count = 0\n"),)},
            "ecr.api, ecr.dkr, s3, logs, secretsmanager",
        ),
        ("prod", {"modules/network/main.tf": ((r', "secretsmanager"\]', "]"),)}, "secretsmanager"),
    ],
    ids=["no-nat-route", "no-secrets-manager-endpoint"],
)
def test_private_tasks_without_a_way_out_fail(make_edited_model, env, files, missing):
    violations = check(make_edited_model(env, files))["private-tasks-have-egress"]
    assert len(violations) == 1 and f"(missing: {missing})" in str(violations[0]), violations


def test_the_api_calling_mlflow_through_the_public_alb_fails(make_edited_model):
    """The incident's wiring: the api reached MLflow by the public name, through the public ALB."""
    model = make_edited_model(
        "staging",
        {
            "main.tf": (
                (
                    r'API_MLFLOW_URL = "http://\$\{local\.mlflow_host\}:\$\{local\.mlflow_port\}/mlflow"',
                    'API_MLFLOW_URL = "http://${var.domain_name}/mlflow"',
                ),
            )
        },
    )
    violations = check(model)["api-reaches-mlflow-internally"]
    assert any("API_MLFLOW_URL = 'http://mlplatform.example.internal/mlflow'" in str(v) for v in violations)


def test_mlflow_refusing_the_internal_name_fails(make_edited_model):
    model = make_edited_model(
        "staging",
        {
            "main.tf": (
                (
                    r'MLFLOW_ALLOWED_HOSTS         = "\$\{local\.mlflow_host\},\$\{local\.mlflow_host\}:\*,',
                    'MLFLOW_ALLOWED_HOSTS         = "',
                ),
            )
        },
    )
    violations = check(model)["api-reaches-mlflow-internally"]
    assert len(violations) == 1 and "MLFLOW_ALLOWED_HOSTS" in violations[0].where
    assert "admitting mlflow.mlplatform-staging.local and mlflow.mlplatform-staging.local:*" in str(violations[0])


def test_mlflow_artifacts_on_the_tasks_disk_fail(make_edited_model):
    model = make_edited_model("staging", {"main.tf": ((r"      MLFLOW_ARTIFACTS_DESTINATION = .*\n", ""),)})
    violations = check(model)["mlflow-artifacts-durable"]
    assert len(violations) == 1 and "'./mlartifacts'" in str(violations[0])


def test_an_alarm_without_actions_or_a_topic_without_subscribers_fails(make_model, terraform):
    model = make_model("staging")
    silent = [
        dict(r, values={**r["values"], "alarm_actions": []}, unknown={})
        if r["type"] == "aws_cloudwatch_metric_alarm"
        else r
        for r in model.resources
    ]
    violations = RULES["alarms-notify"](dataclasses.replace(model, resources=silent))
    alarms = [r for r in model.resources if r["type"] == "aws_cloudwatch_metric_alarm"]
    assert len(alarms) >= 5, "health failures (api, api dependencies, mlflow) and unhealthy hosts per target group"
    assert len(violations) == len(alarms) and all(".alarm_actions" in v.where for v in violations)
    error = terraform.plan_error(str(environment_file("staging")), offline=True, alarm_subscriptions=[])
    assert error and "an alarm that notifies nobody is not an alarm" in " ".join(error.split())


def test_an_alarm_with_its_actions_disabled_fails(make_model):
    model = make_model("staging")
    muted = [
        dict(r, values={**r["values"], "actions_enabled": False}) if r["type"] == "aws_cloudwatch_metric_alarm" else r
        for r in model.resources
    ]
    violations = RULES["alarms-notify"](dataclasses.replace(model, resources=muted))
    alarms = [r for r in model.resources if r["type"] == "aws_cloudwatch_metric_alarm"]
    assert len(violations) == len(alarms) and all(v.where.endswith(".actions_enabled") for v in violations)


def test_awss_default_deregistration_delay_fails(make_model):
    model = make_model("staging", "mlflow", ((r"deregistration_delay\s+= \d+", "deregistration_delay = 300"),))
    violations = check(model)["deregistration-bounded"]
    assert [v.where for v in violations] == [f"{STAGING}: services.mlflow.deregistration_delay"]


def test_an_api_task_smaller_than_its_measured_need_fails(make_model):
    model = make_model("staging")
    small = dataclasses.replace(
        model, services={**model.services, "api": dataclasses.replace(model.services["api"], memory=64)}
    )
    violations = RULES["api-memory-fits"](small)
    assert violations and violations[0].passing == 108


MASTER = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pg-master-AbCdEf"


def test_an_existing_database_replaces_rds_and_the_tasks_still_pass_their_checks(terraform):
    existing = {
        "instance_class": "db.t4g.micro",
        "allocated_storage": 20,
        "multi_az": False,
        "backup_retention_days": 7,
        "deletion_protection": True,
        "existing": {"host": "pg.corp.internal", "port": 5433, "master_secret_arn": MASTER},
    }
    plan = terraform.plan(str(environment_file("staging")), offline=True, database=existing)
    model = from_plan(plan, STAGING, TYPICAL)
    assert not model.of_type("aws_db_instance")
    api = model.services["api"]
    assert (api.environment["API_DATABASE_HOST"], api.environment["API_DATABASE_PORT"]) == ("pg.corp.internal", "5433")
    dbinit = api.containers[1]
    assert dbinit.secrets["DBINIT_MASTER_PASSWORD"] == existing["existing"]["master_secret_arn"] + ":password::"
    assert not check(model)["containers-pass-their-config-check"]
