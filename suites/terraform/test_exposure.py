"""The rules that say whether the plan is safe to expose (harness.plan.exposure): each holds on the
shipped environments, and each finding of the review, put back into a copy of the Terraform,
fails its rule naming the file and field."""

import pytest

from fixtures.terraform import ENVIRONMENTS
from harness.paths import environment_file
from harness.plan.exposure import RULES
from harness.plan.rules import check

pytestmark = pytest.mark.terraform

# The plan as the review found it: MLflow routed from anywhere, HTTP only on port 80, the topic
# under AWS's key, no TLS-only bucket policy, images by mutable tag, every task's execution role
# reading every service's secret, the database open to the world.
REVIEWED = {
    "main.tf": (
        (
            r'route_sources        = each\.key == "mlflow" && var\.mlflow_sign_in == null \? \[var\.vpc_cidr\] : null',
            "route_sources = null",
        ),
        (r"    api    = var\.api_image\n", '    api    = "mlplatform-api:latest"\n'),
        (
            r'Resource = "arn:aws:secretsmanager:\$\{var\.region\}:\$\{local\.account_id\}:secret:'
            r'\$\{module\.database\.service_secret_names\[each\.key\]\}-\?\?\?\?\?\?"',
            "Resource = concat([module.database.master_secret_arn], values(module.database.service_secret_arns))",
        ),
    ),
    "modules/alb/main.tf": (
        (r"merge\(\{ https = 443 \}", "merge({ https = 80 }"),
        (
            r'  protocol          = "HTTPS"\n  ssl_policy        = var\.ssl_policy\n'
            r"  certificate_arn   = var\.certificate_arn\n",
            '  protocol          = "HTTP"\n',
        ),
        (r'resource "aws_lb_listener" "redirect" \{(.|\n)*?\n\}\n\nmoved \{(.|\n)*?\n\}\n', ""),
    ),
    "modules/network/main.tf": (
        (r'for_each = \{ HTTPS = 443, "HTTP \(redirected to HTTPS\)" = 80 \}', "for_each = { HTTP = 80 }"),
        (
            r'("from the tasks"\n(?:.*\n){3})    security_groups = \[aws_security_group\.tasks\.id\]',
            r'\1    cidr_blocks = ["0.0.0.0/0"]',
        ),
    ),
    "modules/observability/main.tf": (
        (r"kms_master_key_id = aws_kms_key\.alarms\.arn", 'kms_master_key_id = "alias/aws/sns"'),
    ),
    "modules/artifacts/main.tf": ((r'resource "aws_s3_bucket_policy" "this" \{\n(.|\n)*?\n\}\n', ""),),
}


@pytest.fixture(scope="module")
def reviewed(make_edited_model):
    return check(make_edited_model("staging", REVIEWED))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_shipped_environments_are_safe_to_expose(make_model, env):
    model = make_model(env)
    found = {rule: [str(v) for v in fn(model)] for rule, fn in RULES.items()}
    assert not any(found.values()), found


def test_mlflow_routed_from_anywhere_without_sign_in_fails(reviewed):
    (v,) = reviewed["no-public-unauthenticated-admin"]
    assert (
        v.where == "terraform/environments/staging.tfvars: "
        'mlflow_sign_in (module.service["mlflow"].aws_lb_listener_rule.this["prod"])'
    )
    assert v.value == {"actions": ["forward"], "source_ip": "any address"} and "10.40.0.0/16" in v.expected


def test_a_public_listener_serving_plain_http_fails(reviewed):
    (v,) = reviewed["public-listeners-serve-https"]
    assert (
        v.where == 'terraform/environments/staging.tfvars: module.alb.aws_lb_listener.this["https"] (port 80).protocol'
    )
    assert v.value == "HTTP"


def test_the_world_reaching_the_database_port_fails(reviewed):
    (v,) = reviewed["world-reaches-only-listener-ports"]
    assert v.where.startswith(
        "terraform/environments/staging.tfvars: module.network.aws_security_group.database.ingress[0]"
    )
    assert v.value == "tcp 5432-5432 from 0.0.0.0/0 or ::/0" and "(80)" in v.expected


def test_the_alarm_topic_under_awss_managed_key_fails(reviewed):
    (v,) = reviewed["alarm-topic-key-admits-cloudwatch"]
    assert v.where.endswith("module.observability.aws_sns_topic.alarms.kms_master_key_id")
    assert v.value == "alias/aws/sns" and "no alarm would ever be delivered" in v.expected


def test_a_bucket_that_serves_plain_http_fails(reviewed):
    (v,) = reviewed["artifacts-deny-plain-http"]
    assert v.where.endswith("module.artifacts.aws_s3_bucket.this (its aws_s3_bucket_policy)")


def test_an_image_by_mutable_tag_fails(reviewed, terraform):
    found = reviewed["images-immutable"]
    assert {v.where.rsplit(": ", 1)[1] for v in found} == {
        "api_image (services.api, container api)",
        "api_image (services.api, container dbinit)",
    }
    assert {v.value for v in found} == {"mlplatform-api:latest"}
    for value in ("mlplatform-api:latest", "mlplatform-api:v1.2", "mlplatform-api"):
        error = terraform.plan_error(str(environment_file("staging")), offline=True, api_image=value)
        assert error and "api_image must name an immutable image" in " ".join(error.split()), value


def test_the_same_rules_hold_against_a_subtler_plan(make_edited_model):
    """HTTP that redirects to HTTP, an old TLS policy, MLflow admitted from an office's public range,
    a key whose policy forgets CloudWatch: each is named."""
    found = check(
        make_edited_model(
            "staging",
            {
                "modules/alb/main.tf": (
                    (
                        r'      port        = "443"\n      protocol    = "HTTPS"',
                        '      port        = "443"\n      protocol    = "HTTP"',
                    ),
                    (
                        r'default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"',
                        'default     = "ELBSecurityPolicy-2016-08"',
                    ),
                ),
                "main.tf": ((r"\? \[var\.vpc_cidr\] : null", '? ["203.0.113.0/24"] : null'),),
                "modules/observability/main.tf": (
                    (
                        r'Principal = \{ Service = "cloudwatch\.amazonaws\.com" \}',
                        'Principal = { Service = "sns.amazonaws.com" }',
                    ),
                ),
            },
        )
    )
    https = sorted(v.where.rsplit(": ", 1)[1] for v in found["public-listeners-serve-https"])
    assert https == [
        "module.alb.aws_lb_listener.redirect (port 80).protocol",
        'module.alb.aws_lb_listener.this["https"] (port 443).ssl_policy',
    ], found["public-listeners-serve-https"]
    (admin,) = found["no-public-unauthenticated-admin"]
    assert admin.value == {"actions": ["forward"], "source_ip": ["203.0.113.0/24"]}
    (key,) = found["alarm-topic-key-admits-cloudwatch"]
    assert key.where.endswith("module.observability.aws_kms_key.alarms.policy")
    assert key.value == "no Allow of kms:Decrypt, kms:GenerateDataKey to cloudwatch.amazonaws.com"


def test_mlflow_behind_the_balancers_sign_in_is_public_and_passes(terraform):
    from fixtures.terraform import TYPICAL
    from harness.plan.timing import from_plan

    pool = {
        "user_pool_arn": "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEfGhI",
        "user_pool_client_id": "1example23456789",
        "user_pool_domain": "mlplatform-staging",
    }
    plan = terraform.plan(str(environment_file("staging")), offline=True, mlflow_sign_in=pool)
    model = from_plan(plan, "staging.tfvars", TYPICAL)
    (rule,) = [r for r in model.of_type("aws_lb_listener_rule") if '"mlflow"' in r["address"]]
    assert [a["type"] for a in rule["values"]["action"]] == ["authenticate-cognito", "forward"]
    assert not [c for c in rule["values"]["condition"] if c["source_ip"]], "public, behind sign-in"
    assert RULES["no-public-unauthenticated-admin"](model) == []


def test_an_execution_role_that_reads_every_services_secret_fails(reviewed):
    found = reviewed["roles-least-privilege"]
    assert sorted(v.where.rsplit(": ", 1)[1] for v in found) == [
        'aws_iam_role_policy.execution_secrets["api"].policy',
        'aws_iam_role_policy.execution_secrets["mlflow"].policy',
    ]
    assert all("module.database.service_secret_arns" in v.value for v in found), found


def test_a_secret_of_another_service_or_a_star_resource_fails(make_edited_model):
    found = check(
        make_edited_model(
            "staging",
            {
                "main.tf": (
                    (r"\$\{module\.database\.service_secret_names\[each\.key\]\}-", "${local.name}/*/database-"),
                ),
                "modules/artifacts/main.tf": ((r"resources = \[local\.arn\]", 'resources = ["*"]'),),
            },
        )
    )["roles-least-privilege"]
    by_where = {v.where.rsplit(": ", 1)[1]: v for v in found}
    assert sorted(by_where) == [
        'aws_iam_role_policy.execution_secrets["api"].policy Statement[0]',
        'aws_iam_role_policy.execution_secrets["mlflow"].policy Statement[0]',
        "aws_iam_role_policy.mlflow_artifacts.policy Statement[0]",
    ], found
    assert (
        "this reads the secret of mlflow"
        in by_where['aws_iam_role_policy.execution_secrets["api"].policy Statement[0]'].expected
    )
    assert by_where["aws_iam_role_policy.mlflow_artifacts.policy Statement[0]"].value == {
        "Action": ["s3:ListBucket"],
        "Resource": "*",
    }
